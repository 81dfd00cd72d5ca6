//! Run-time backend choice: `--device flex|wgpu|cuda`, defaulting to the best one compiled in,
//! resolved once into a [`Target`]: the burn device and the [`Compute`] path every model builds
//! its layers for.
//!
//! One binary carries every backend its features enabled; burn 0.22 dispatches on the `Device`
//! value, so the model code has no backend type parameter.
//!
//! ```text
//!  DeviceChoice (flag, setting) ─┬─ device(): burn Device
//!  kernels (host | burn) ────────┴─ Compute { Host, Burn } ─ Target ─ every model's path enum
//! ```

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

/// How the models compute, chosen once per load: each model builds the path enum this names
/// (the LM's `LmPath`, the codec's `DecoderPath`) and never tests the device again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// Host kernels on the CPU (`kernels/host`); burn-flex serves what has no host kernel yet
    /// (the codec encoder, the style model).
    Host,
    /// burn ops on the device: the CPU with `--kernels burn` and GPUs with `--kernels burn` (the
    /// reference paths), and what has no kernel of ours yet on GPUs (encoders, codec).
    Burn,
    /// Our own decode kernels on a GPU (`kernels/gpu`, CubeCL through the device's cubecl client).
    Gpu,
}

impl Compute {
    /// The path for `choice`: our own kernels (host kernels on the CPU, GPU kernels elsewhere)
    /// unless `own_kernels` is off, then burn ops.
    pub fn resolve(choice: DeviceChoice, own_kernels: bool) -> Self {
        match (choice, own_kernels) {
            (_, false) => Compute::Burn,
            (DeviceChoice::Flex, true) => Compute::Host,
            (_, true) => Compute::Gpu,
        }
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compute::Host => "host kernels",
            Compute::Burn => "burn ops",
            Compute::Gpu => "GPU kernels",
        })
    }
}

/// The `--kernels` spellings: `host` (also the old `cpu`) or `burn`.
pub fn parse_host_kernels(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "host" | "cpu" => Ok(true),
        "burn" => Ok(false),
        other => Err(format!("unknown kernels `{other}` (expected host or burn)")),
    }
}

/// Where models run: the backend chosen, its burn device, and the compute path.
#[derive(Clone, Debug)]
pub struct Target {
    pub choice: DeviceChoice,
    pub device: Device,
    pub compute: Compute,
}

impl Target {
    /// `choice` with host kernels on the CPU (the default path).
    pub fn new(choice: DeviceChoice) -> Result<Self, String> {
        Self::with_kernels(choice, true)
    }

    /// `choice` with host kernels on or off (off: burn ops on the CPU too).
    pub fn with_kernels(choice: DeviceChoice, host_kernels: bool) -> Result<Self, String> {
        Ok(Self { device: choice.device()?, compute: Compute::resolve(choice, host_kernels), choice })
    }

    /// The CPU with host kernels (tests, tools).
    #[cfg(feature = "flex")]
    pub fn host() -> Self {
        Self { choice: DeviceChoice::Flex, device: Device::flex(), compute: Compute::Host }
    }
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
        assert_eq!(Target::new(DeviceChoice::Flex).unwrap().compute, Compute::Host);
        assert_eq!(Compute::resolve(DeviceChoice::Flex, false), Compute::Burn);
        assert_eq!(Compute::resolve(DeviceChoice::Wgpu, true), Compute::Gpu);
        assert_eq!(Compute::resolve(DeviceChoice::Wgpu, false), Compute::Burn);
        assert_eq!((parse_host_kernels("host"), parse_host_kernels("cpu"), parse_host_kernels("burn")), (Ok(true), Ok(true), Ok(false)));
        assert!(parse_host_kernels("gpu").is_err());
    }
}
