//! Where a model runs: maspo's own CPU kernels, or candle's tensor backend on a device
//! (`cuda[:N]` with the `cuda` feature; `candle-cpu` runs the same device code on the host so
//! machines without a GPU can test it).
//!
//! Owns the parsing and naming of device choices and the mapping to a candle device. Does not
//! own any forward numerics.

use super::error::{EngineError, Result};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A device choice (`--device`, engine key `device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// maspo's CPU kernels (the default: quantized dot products, packed ragged attention).
    #[default]
    Cpu,
    /// candle's CPU backend running the device forward (a test path for the GPU code).
    CandleCpu,
    /// An NVIDIA GPU by ordinal, through candle's CUDA backend (needs the `cuda` feature).
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether the forward runs on candle tensors (the device path) rather than maspo's CPU
    /// kernels.
    pub fn is_candle(self) -> bool {
        !matches!(self, Self::Cpu)
    }

    /// The candle device of the device path (`Cpu` maps to candle's CPU too, unused).
    pub fn candle_device(self) -> Result<candle_core::Device> {
        match self {
            Self::Cpu | Self::CandleCpu => Ok(candle_core::Device::Cpu),
            Self::Cuda(n) => cuda_device(n),
        }
    }

    /// Whether this build can open the device at all (not whether one is present).
    pub fn compiled(self) -> bool {
        !matches!(self, Self::Cuda(_)) || cfg!(feature = "cuda")
    }
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<candle_core::Device> {
    candle_core::Device::new_cuda(n).map_err(|e| {
        EngineError::Device(format!(
            "cannot open CUDA device {n}: {e} (check `nvidia-smi`, the driver and that CUDA 13 libraries are on the loader path)"
        ))
    })
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<candle_core::Device> {
    Err(EngineError::Device(format!(
        "--device cuda:{n}: this maspo was built without CUDA (build with `scripts/build-cuda.sh` or `cargo build --release --features cuda`)"
    )))
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::CandleCpu => f.write_str("candle-cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("unknown device `{s}` (expected cpu, candle-cpu, cuda or cuda:N)");
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "candle-cpu" => Ok(Self::CandleCpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(Self::Cuda).map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl Serialize for DeviceSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceSpec;

    #[test]
    fn device_names_round_trip_and_bad_ones_say_what_is_accepted() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("candle-cpu", DeviceSpec::CandleCpu),
            ("cuda:0", DeviceSpec::Cuda(0)),
            ("cuda:3", DeviceSpec::Cuda(3)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d);
            assert_eq!(d.to_string(), s);
        }
        assert_eq!("CUDA".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        for bad in ["tpu", "cuda:x", "cuda:-1", ""] {
            let e = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(e.contains("cpu, candle-cpu, cuda or cuda:N"), "{e}");
        }
        if !cfg!(feature = "cuda") {
            let e = DeviceSpec::Cuda(0).candle_device().unwrap_err().to_string();
            assert!(
                e.contains("built without CUDA") && e.contains("--features cuda"),
                "{e}"
            );
        }
    }
}
