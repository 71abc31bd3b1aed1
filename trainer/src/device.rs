//! Device selection: which processor runs training steps and generation.
//!
//! Owns: [`Device`] (what a caller asks for: `auto`, `cpu`, `cuda[:N]`), [`ActiveDevice`]
//! (what actually runs, for printing and reports), [`DeviceError`] (asking for CUDA
//! explicitly where it cannot run), and the resolution from the first to the second.
//! The dispatching types built on it are [`crate::train::Trainer`] (training steps) and
//! [`crate::infer::Engine::set_device`] (generation); both keep the CPU path's interface,
//! so callers never branch on the device.
//!
//! Does not own: any GPU code (`crate::gpu`, behind the `cuda` feature) or CPU code.
//!
//! Policy: `Auto` uses CUDA device 0 when it opens and falls back to the CPU only on
//! "there is no GPU here" (`GpuError::NoGpu`: no driver, no library, no device, or a build
//! without the `cuda` feature); any other GPU failure is an error, because a GPU that is
//! present but broken should be seen, not silently replaced by a 100x slower path.
//! `Cuda(n)` never falls back. The emulated device (gpu-emu/, reporting
//! [`crate::gpu::EMULATED_DEVICE_NAME`]) is never a GPU: `Auto` falls back to the CPU
//! past it, saying why; only an explicit `Cuda(n)` uses it.

use serde::{Deserialize, Serialize};

/// The device a caller asks for. Serialized (a self-play run's TOML and `run.json`) as
/// its command-line name: `"auto"`, `"cpu"`, `"cuda"`, `"cuda:N"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Device {
    /// CUDA device 0 when usable, else the CPU.
    #[default]
    Auto,
    /// The CPU (f32 reference path), even where a GPU exists.
    Cpu,
    /// This CUDA device; an error where it cannot be used.
    Cuda(usize),
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Auto => f.write_str("auto"),
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(0) => f.write_str("cuda"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device name that is not `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device {given:?}: expected auto, cpu, cuda or cuda:N")]
pub struct ParseDeviceError {
    pub given: String,
}

impl std::str::FromStr for Device {
    type Err = ParseDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ParseDeviceError {
            given: s.to_string(),
        };
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Device::Auto),
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(bad),
        }
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}

impl TryFrom<String> for Device {
    type Error = ParseDeviceError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// The device that runs, after resolution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActiveDevice {
    Cpu {
        /// Why `auto` did not pick a GPU (`None` when the CPU was asked for).
        fallback_reason: Option<String>,
    },
    Cuda {
        ordinal: usize,
        /// The device's name as the driver reports it.
        name: String,
    },
}

impl ActiveDevice {
    pub fn is_cuda(&self) -> bool {
        matches!(self, ActiveDevice::Cuda { .. })
    }
}

impl std::fmt::Display for ActiveDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActiveDevice::Cpu {
                fallback_reason: None,
            } => f.write_str("cpu"),
            ActiveDevice::Cpu {
                fallback_reason: Some(r),
            } => write!(f, "cpu (auto fell back: {r})"),
            ActiveDevice::Cuda { ordinal, name } => write!(f, "cuda:{ordinal} ({name})"),
        }
    }
}

/// Why the requested device cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A CUDA device failed: for `Cuda(n)` asked explicitly on a machine without a GPU the
    /// source is `GpuError::NoGpu`; otherwise the GPU operation that failed.
    #[cfg(feature = "cuda")]
    #[error("CUDA device {ordinal}: {source}")]
    Cuda {
        ordinal: usize,
        #[source]
        source: crate::gpu::GpuError,
    },
    /// `Cuda(n)` asked of a build without the `cuda` feature.
    #[cfg(not(feature = "cuda"))]
    #[error("CUDA device {ordinal} requested, but this build has no `cuda` feature")]
    NotBuilt { ordinal: usize },
}

impl DeviceError {
    /// True when the error only says that no GPU is usable here.
    pub fn is_no_gpu(&self) -> bool {
        match self {
            #[cfg(feature = "cuda")]
            DeviceError::Cuda { source, .. } => source.is_no_gpu(),
            #[cfg(not(feature = "cuda"))]
            DeviceError::NotBuilt { .. } => true,
        }
    }
}

/// What [`resolve`] opened.
#[derive(Debug)]
pub(crate) enum Resolved {
    Cpu {
        fallback_reason: Option<String>,
    },
    #[cfg(feature = "cuda")]
    Cuda(Box<crate::gpu::Gpu>),
}

impl Resolved {
    /// The device for reports.
    pub(crate) fn active(&self) -> ActiveDevice {
        match self {
            Resolved::Cpu { fallback_reason } => ActiveDevice::Cpu {
                fallback_reason: fallback_reason.clone(),
            },
            #[cfg(feature = "cuda")]
            Resolved::Cuda(gpu) => ActiveDevice::Cuda {
                ordinal: gpu.info().ordinal,
                name: gpu.info().name.clone(),
            },
        }
    }
}

/// Opens the requested device, applying the policy in the module doc.
pub(crate) fn resolve(device: Device) -> Result<Resolved, DeviceError> {
    match device {
        Device::Cpu => Ok(Resolved::Cpu {
            fallback_reason: None,
        }),
        #[cfg(feature = "cuda")]
        Device::Auto => match crate::gpu::Gpu::open() {
            Ok(g) if g.is_emulated() => Ok(Resolved::Cpu {
                fallback_reason: Some(format!(
                    "CUDA device 0 is the CPU emulator {:?}, which auto never selects (ask for --device cuda to use it)",
                    g.info().name
                )),
            }),
            Ok(g) => Ok(Resolved::Cuda(Box::new(g))),
            Err(e) if e.is_no_gpu() => Ok(Resolved::Cpu {
                fallback_reason: Some(e.to_string()),
            }),
            Err(source) => Err(DeviceError::Cuda { ordinal: 0, source }),
        },
        #[cfg(feature = "cuda")]
        Device::Cuda(ordinal) => crate::gpu::Gpu::open_ordinal(ordinal)
            .map(|g| Resolved::Cuda(Box::new(g)))
            .map_err(|source| DeviceError::Cuda { ordinal, source }),
        #[cfg(not(feature = "cuda"))]
        Device::Auto => Ok(Resolved::Cpu {
            fallback_reason: Some("built without the `cuda` feature".into()),
        }),
        #[cfg(not(feature = "cuda"))]
        Device::Cuda(ordinal) => Err(DeviceError::NotBuilt { ordinal }),
    }
}

/// Wraps a GPU failure on `gpu`'s device.
#[cfg(feature = "cuda")]
pub(crate) fn on(
    gpu: &crate::gpu::Gpu,
) -> impl FnOnce(crate::gpu::GpuError) -> DeviceError + use<> {
    let ordinal = gpu.info().ordinal;
    move |source| DeviceError::Cuda { ordinal, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_round_trip() {
        for d in [Device::Auto, Device::Cpu, Device::Cuda(0), Device::Cuda(3)] {
            assert_eq!(d.to_string().parse::<Device>(), Ok(d));
        }
        assert_eq!("CUDA:1".parse::<Device>(), Ok(Device::Cuda(1)));
        assert!("tpu".parse::<Device>().is_err());
        assert!("cuda:x".parse::<Device>().is_err());
    }

    #[test]
    fn devices_serialize_as_their_command_line_names() {
        assert_eq!(
            serde_json::to_string(&Device::Cuda(2)).unwrap(),
            "\"cuda:2\""
        );
        let d: Device = serde_json::from_str("\"cpu\"").unwrap();
        assert_eq!(d, Device::Cpu);
        assert!(serde_json::from_str::<Device>("\"tpu\"").is_err());
    }

    #[test]
    fn cpu_is_never_a_gpu_and_needs_no_probe() {
        let r = resolve(Device::Cpu).unwrap();
        assert_eq!(
            r.active(),
            ActiveDevice::Cpu {
                fallback_reason: None
            }
        );
    }
}
