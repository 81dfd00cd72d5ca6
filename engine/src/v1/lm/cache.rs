//! Preallocated key/value caches for incremental decoding.
//!
//! Each cache holds `[batch, heads, capacity, head_dim]` keys and values allocated once per chunk
//! (temporal: capacity = frames per chunk; depth: capacity = levels, reset every frame). A step
//! writes its single position at the cursor with in-place slice assignment; nothing grows.

use burn::tensor::{Device, Tensor};

#[derive(Clone, Debug)]
pub struct KvCache {
    keys: Tensor<4>,
    values: Tensor<4>,
    len: usize,
}

impl KvCache {
    pub fn new(batch: usize, heads: usize, capacity: usize, head_dim: usize, device: &Device) -> Self {
        Self {
            keys: Tensor::zeros([batch, heads, capacity, head_dim], device),
            values: Tensor::zeros([batch, heads, capacity, head_dim], device),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.keys.dims()[2]
    }

    /// Forgets the cached positions without releasing or clearing the storage.
    pub fn reset(&mut self) {
        self.len = 0;
    }

    /// Writes one position (`k, v: [b, h, 1, dh]`) at the cursor and returns the keys and values of
    /// every cached position so far (`[b, h, len, dh]`).
    ///
    /// Panics if the cache is full: the decode loop sizes every cache to its exact step count.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, cap, dh] = self.keys.dims();
        assert!(self.len < cap, "KV cache overflow: capacity {cap} (decode loop sized it exactly)");
        let (t0, t1) = (self.len, self.len + 1);
        self.keys.inplace(|x| x.slice_assign([0..b, 0..h, t0..t1, 0..dh], k));
        self.values.inplace(|x| x.slice_assign([0..b, 0..h, t0..t1, 0..dh], v));
        self.len = t1;
        (
            self.keys.clone().slice([0..b, 0..h, 0..t1, 0..dh]),
            self.values.clone().slice([0..b, 0..h, 0..t1, 0..dh]),
        )
    }
}
