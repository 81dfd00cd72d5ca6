//! One host tensor type and one store of named tensors that every loader takes from.
//!
//! A loader walks its model's name map and asks the store for each tensor with the shape it
//! expects ([`TensorStore::tensor`] borrows, [`TensorStore::take`] moves the values out); at the
//! end [`TensorStore::check_all_used`] names every tensor the walk never asked for. So a missing,
//! mis-shaped, non-finite or extra tensor is an error naming the file and the tensor, whatever the
//! format it came from.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// A host tensor: row-major (C-order) f32 values and their shape (empty for a scalar).
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

/// What is wrong with a tensor a loader asked for. `path` is the file (or checkpoint folder).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TensorError {
    #[error("{path} lacks tensor `{name}`")]
    Missing { path: PathBuf, name: String },
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected}")]
    Shape { path: PathBuf, name: String, expected: String, found: Vec<usize> },
    #[error("tensor `{name}` in {path} holds a non-finite value at flat index {index}")]
    NonFinite { path: PathBuf, name: String, index: usize },
    #[error("{path} has tensors this model does not use (wrong size or config?): {names:?}")]
    Unexpected { path: PathBuf, names: Vec<String> },
}

/// `[Some(2), None]` → `"[2, _]"`: a shape a loader asks for, `None` = any size.
pub fn shape_text(shape: &[Option<usize>]) -> String {
    format!("[{}]", shape.iter().map(|d| d.map_or_else(|| "_".to_owned(), |d| d.to_string())).collect::<Vec<_>>().join(", "))
}

/// Named tensors from one source, handed out with their checks.
#[derive(Clone, Debug)]
pub struct TensorStore {
    /// The file or folder the tensors came from (named in errors).
    pub path: PathBuf,
    tensors: BTreeMap<String, HostTensor>,
    /// Names handed out, to report the ones never asked for.
    used: RefCell<BTreeSet<String>>,
}

impl TensorStore {
    pub fn new(path: impl Into<PathBuf>, tensors: BTreeMap<String, HostTensor>) -> Self {
        Self { path: path.into(), tensors, used: Default::default() }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor without any check (diagnostics).
    pub fn get(&self, name: &str) -> Option<&HostTensor> {
        self.tensors.get(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// Removes a tensor unchecked (tests of the error paths).
    pub fn remove(&mut self, name: &str) -> Option<HostTensor> {
        self.tensors.remove(name)
    }

    /// Every tensor, by name (serialisation).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HostTensor)> {
        self.tensors.iter().map(|(n, t)| (n.as_str(), t))
    }

    /// The tensor `name`, checked against `shape` (`None` = any size) and for finite values.
    pub fn tensor(&self, name: &str, shape: &[Option<usize>]) -> Result<&HostTensor, TensorError> {
        let t = self.tensors.get(name).ok_or_else(|| TensorError::Missing { path: self.path.clone(), name: name.to_owned() })?;
        check(&self.path, name, t, shape)?;
        self.used.borrow_mut().insert(name.to_owned());
        Ok(t)
    }

    /// Moves the tensor `name` out, with the checks of [`Self::tensor`].
    pub fn take(&mut self, name: &str, shape: &[Option<usize>]) -> Result<HostTensor, TensorError> {
        self.tensor(name, shape)?;
        Ok(self.tensors.remove(name).expect("checked just above"))
    }

    /// [`Self::take`] with the shape given exactly.
    pub fn take_exact(&mut self, name: &str, shape: &[usize]) -> Result<HostTensor, TensorError> {
        let want: Vec<Option<usize>> = shape.iter().map(|&d| Some(d)).collect();
        self.take(name, &want)
    }

    /// Errors naming every tensor under `prefix` that was never asked for (a config that does not
    /// match the file).
    pub fn check_all_used(&self, prefix: &str) -> Result<(), TensorError> {
        let used = self.used.borrow();
        let unused: Vec<String> = self.tensors.keys().filter(|n| n.starts_with(prefix) && !used.contains(*n)).cloned().collect();
        if unused.is_empty() {
            Ok(())
        } else {
            Err(TensorError::Unexpected { path: self.path.clone(), names: unused })
        }
    }
}

fn check(path: &std::path::Path, name: &str, t: &HostTensor, shape: &[Option<usize>]) -> Result<(), TensorError> {
    let fits = t.shape.len() == shape.len() && t.shape.iter().zip(shape).all(|(&d, want)| want.is_none_or(|w| w == d));
    if !fits {
        return Err(TensorError::Shape { path: path.to_path_buf(), name: name.to_owned(), expected: shape_text(shape), found: t.shape.clone() });
    }
    if let Some(index) = t.data.iter().position(|v| !v.is_finite()) {
        return Err(TensorError::NonFinite { path: path.to_path_buf(), name: name.to_owned(), index });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> TensorStore {
        let mut m = BTreeMap::new();
        m.insert("a/w".to_owned(), HostTensor::new(vec![2, 3], vec![0.0; 6]));
        m.insert("a/b".to_owned(), HostTensor::new(vec![3], vec![1.0, f32::NAN, 0.0]));
        m.insert("z/x".to_owned(), HostTensor::new(vec![1], vec![0.0]));
        TensorStore::new("/m.safetensors", m)
    }

    #[test]
    fn each_kind_of_bad_tensor_is_an_error_naming_it() {
        let mut s = store();
        assert_eq!(s.tensor("a/w", &[Some(2), None]).map(|t| t.numel()), Ok(6));
        let e = s.tensor("a/w", &[Some(3), None]).unwrap_err();
        assert_eq!(e.to_string(), "tensor `a/w` in /m.safetensors has shape [2, 3], expected [3, _]");
        assert!(matches!(s.take("a/b", &[Some(3)]), Err(TensorError::NonFinite { index: 1, .. })));
        assert!(matches!(s.take("a/q", &[]), Err(TensorError::Missing { .. })));
        assert_eq!(s.check_all_used("z/"), Err(TensorError::Unexpected { path: "/m.safetensors".into(), names: vec!["z/x".into()] }));
        assert_eq!(s.get("a/b").map(|t| t.numel()), Some(3), "a failed take leaves the tensor");
        assert!(s.check_all_used("a/w").is_ok());
        assert!(s.take_exact("z/x", &[1]).is_ok());
        assert_eq!(s.check_all_used(""), Err(TensorError::Unexpected { path: "/m.safetensors".into(), names: vec!["a/b".into()] }));
    }
}
