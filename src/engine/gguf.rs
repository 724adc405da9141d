//! Typed access to a GGUF file: metadata getters that collect every missing key, and tensors.
//!
//! Owns opening the file and checking it at the door. Must not know about any architecture's
//! tensor names beyond what a caller asks for.

use super::error::{EngineError, Result};
use candle_core::quantized::{gguf_file, QTensor};
use candle_core::Device;
use std::cell::RefCell;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// An open GGUF file: parsed header plus a reader for tensor data.
pub struct GgufFile {
    path: PathBuf,
    content: gguf_file::Content,
    reader: RefCell<BufReader<File>>,
    missing: RefCell<Vec<String>>,
}

impl GgufFile {
    /// Opens and parses the header; a truncated or non-GGUF file gives [`EngineError::BadGguf`].
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|source| EngineError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut reader = BufReader::new(file);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| {
            // Name the field where the bytes stop making sense, when it can be found.
            let field = File::open(path)
                .ok()
                .and_then(|f| super::gguf_diagnose::first_broken_field(BufReader::new(f)));
            EngineError::BadGguf {
                path: path.to_path_buf(),
                reason: match field {
                    Some(field) => format!("{field} ({e})"),
                    None => e.to_string(),
                },
            }
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            content,
            reader: RefCell::new(reader),
            missing: RefCell::new(Vec::new()),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `general.architecture`, if present.
    pub fn architecture(&self) -> Option<String> {
        self.opt_str("general.architecture")
    }

    fn value(&self, key: &str) -> Option<&gguf_file::Value> {
        self.content.metadata.get(key)
    }

    /// An optional string value.
    pub fn opt_str(&self, key: &str) -> Option<String> {
        self.value(key)
            .and_then(|v| v.to_string().ok())
            .map(|s| s.to_string())
    }

    /// An optional unsigned integer (any integer width).
    pub fn opt_u64(&self, key: &str) -> Option<u64> {
        use gguf_file::Value as V;
        match self.value(key)? {
            V::U8(v) => Some(*v as u64),
            V::U16(v) => Some(*v as u64),
            V::U32(v) => Some(*v as u64),
            V::U64(v) => Some(*v),
            V::I8(v) if *v >= 0 => Some(*v as u64),
            V::I16(v) if *v >= 0 => Some(*v as u64),
            V::I32(v) if *v >= 0 => Some(*v as u64),
            V::I64(v) if *v >= 0 => Some(*v as u64),
            _ => None,
        }
    }

    /// An optional float (f32 or f64).
    pub fn opt_f64(&self, key: &str) -> Option<f64> {
        match self.value(key)? {
            gguf_file::Value::F32(v) => Some(*v as f64),
            gguf_file::Value::F64(v) => Some(*v),
            _ => None,
        }
    }

    /// An optional boolean.
    pub fn opt_bool(&self, key: &str) -> Option<bool> {
        self.value(key).and_then(|v| v.to_bool().ok())
    }

    /// A required unsigned integer; a missing key is recorded (see [`GgufFile::check`]) and 0 returned.
    pub fn req_usize(&self, key: &str) -> usize {
        self.opt_u64(key).map(|v| v as usize).unwrap_or_else(|| {
            self.missing.borrow_mut().push(key.to_string());
            0
        })
    }

    /// A required float; a missing key is recorded and 0 returned.
    pub fn req_f64(&self, key: &str) -> f64 {
        self.opt_f64(key).unwrap_or_else(|| {
            self.missing.borrow_mut().push(key.to_string());
            0.0
        })
    }

    /// A required array of strings; a missing key is recorded and an empty vec returned.
    pub fn req_str_array(&self, key: &str) -> Vec<String> {
        let out = self
            .value(key)
            .and_then(|v| v.to_vec().ok())
            .and_then(|vs| {
                vs.iter()
                    .map(|v| v.to_string().ok().cloned())
                    .collect::<Option<Vec<_>>>()
            });
        out.unwrap_or_else(|| {
            self.missing.borrow_mut().push(key.to_string());
            Vec::new()
        })
    }

    /// An optional array of integers.
    pub fn opt_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        use gguf_file::Value as V;
        let vs = self.value(key)?.to_vec().ok()?;
        vs.iter()
            .map(|v| match v {
                V::I32(x) => Some(*x as i64),
                V::U32(x) => Some(*x as i64),
                V::I64(x) => Some(*x),
                V::U8(x) => Some(*x as i64),
                V::I8(x) => Some(*x as i64),
                _ => None,
            })
            .collect()
    }

    /// Marks `key` as missing (for checks the getters cannot express).
    pub fn record_missing(&self, key: impl Into<String>) {
        self.missing.borrow_mut().push(key.into());
    }

    /// Fails with every key recorded as missing so far, or succeeds when none was.
    pub fn check(&self, arch: &str) -> Result<()> {
        let missing = self.missing.borrow();
        if missing.is_empty() {
            return Ok(());
        }
        Err(EngineError::Metadata {
            path: self.path.clone(),
            arch: arch.to_string(),
            keys: missing.join(", "),
        })
    }

    /// Whether a tensor of this name exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    /// Shape of a tensor as candle reports it (row-major, outermost first).
    pub fn tensor_dims(&self, name: &str) -> Option<Vec<usize>> {
        self.content
            .tensor_infos
            .get(name)
            .map(|t| t.shape.dims().to_vec())
    }

    /// Reads a tensor, checking that it exists and has the expected shape.
    pub fn tensor(&self, name: &str, dims: &[usize], device: &Device) -> Result<QTensor> {
        let tensor_err = |reason: String| EngineError::Tensor {
            path: self.path.clone(),
            name: name.to_string(),
            reason,
        };
        let found = self
            .tensor_dims(name)
            .ok_or_else(|| tensor_err("missing from the file".into()))?;
        if found != dims {
            return Err(tensor_err(format!(
                "has shape {found:?}, the metadata implies {dims:?}"
            )));
        }
        let mut reader = self.reader.borrow_mut();
        self.content
            .tensor(&mut *reader, name, device)
            .map_err(|e| EngineError::BadGguf {
                path: self.path.clone(),
                reason: format!("tensor `{name}`: {e}"),
            })
    }
}
