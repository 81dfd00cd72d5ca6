//! Run-time backend choice: `--device flex|wgpu|cuda`, defaulting to the best one compiled in.
//!
//! One binary carries every backend its features enabled; burn 0.22 dispatches on the `Device`
//! value, so the model code has no backend type parameter.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DeviceChoice {
    /// burn-flex on the CPU (SIMD kernels, rayon threads).
    Flex,
    /// wgpu: Vulkan, Metal or DX12, whichever the platform offers.
    Wgpu,
    /// NVIDIA CUDA (opt-in `cuda` feature).
    Cuda,
}

impl DeviceChoice {
    pub const ALL: [DeviceChoice; 3] = [DeviceChoice::Flex, DeviceChoice::Wgpu, DeviceChoice::Cuda];

    pub fn is_compiled(self) -> bool {
        match self {
            DeviceChoice::Flex => cfg!(feature = "flex"),
            DeviceChoice::Wgpu => cfg!(feature = "wgpu"),
            DeviceChoice::Cuda => cfg!(feature = "cuda"),
        }
    }

    pub fn compiled() -> Vec<DeviceChoice> {
        Self::ALL.into_iter().filter(|d| d.is_compiled()).collect()
    }

    /// The default when none is asked for: CUDA, then the CPU. wgpu is never picked silently
    /// because on a machine without a GPU it falls back to a software rasteriser that is far
    /// slower than flex; ask for it with `--device wgpu`.
    pub fn best_compiled() -> Option<DeviceChoice> {
        [DeviceChoice::Cuda, DeviceChoice::Flex, DeviceChoice::Wgpu].into_iter().find(|d| d.is_compiled())
    }

    /// The burn device, or an error naming what to rebuild with.
    pub fn device(self) -> Result<Device, String> {
        match self {
            #[cfg(feature = "flex")]
            DeviceChoice::Flex => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceChoice::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            DeviceChoice::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(format!(
                "device `{other}` is not compiled into this build (compiled: {}); rebuild with `--features {other}`",
                Self::compiled().iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

/// Whether `device` is the flex CPU backend (layouts that help a CPU differ from a GPU's).
pub fn is_flex(device: &Device) -> bool {
    // burn re-exports no public enum to match on; its Debug form is `Device<Flex(..)>`.
    format!("{device:?}").starts_with("Device<Flex")
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Flex => "flex",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "flex" | "cpu" => Ok(DeviceChoice::Flex),
            "wgpu" | "gpu" | "vulkan" => Ok(DeviceChoice::Wgpu),
            "cuda" => Ok(DeviceChoice::Cuda),
            _ => Err(format!("unknown device {s:?}; expected flex, wgpu or cuda")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_default_is_compiled() {
        for d in DeviceChoice::ALL {
            assert_eq!(d.to_string().parse::<DeviceChoice>(), Ok(d));
        }
        assert!("tpu".parse::<DeviceChoice>().is_err());
        let best = DeviceChoice::best_compiled().expect("at least one backend is compiled");
        assert!(best.is_compiled());
        assert!(is_flex(&DeviceChoice::Flex.device().unwrap()));
    }
}
