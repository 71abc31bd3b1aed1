//! GGUF (version 2 and 3): the file format of llama.cpp models.
//!
//! Owns: parsing the header, metadata of every value type (arrays included), tensor
//! infos and alignment from a memory map ([`GgufFile`]); dequantizing tensors
//! ([`quant`]); building a [`crate::Config`] and [`crate::Weights`] from a llama
//! file ([`model`]); and a small writer ([`write_gguf`]) for tests and exports.
//! Does not own: the tokenizer built from the metadata (`crate::tokenizer`).
//!
//! Every malformed input becomes a [`GgufError`]: sizes and counts read from the file
//! are checked against the bytes that remain before anything is allocated, so a
//! corrupt length cannot trigger a huge allocation.

pub mod model;
pub mod quant;

use memmap2::Mmap;
use quant::TensorType;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use model::{config_from_gguf, load_model, weights_from_gguf};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;

/// Why a GGUF file could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a GGUF file: magic is {found:?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported GGUF version {0} (this reader handles 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file is truncated: {what} at byte {offset} needs {needed} bytes, {available} remain")]
    Truncated {
        what: &'static str,
        offset: u64,
        needed: u64,
        available: u64,
    },
    #[error("metadata key {key:?} has unknown value type {type_id}")]
    UnknownValueType { key: String, type_id: u32 },
    #[error("string at byte {offset} is not valid UTF-8")]
    BadString { offset: u64 },
    #[error(
        "tensor {name:?} has tensor type {type_id}, which this reader does not support (F32, F16, BF16, Q8_0, Q4_0, Q4_1)"
    )]
    UnknownTensorType { name: String, type_id: u32 },
    #[error("tensor {name:?} has {elements} elements, not a whole number of {ty} blocks")]
    PartialBlock {
        name: String,
        elements: u64,
        ty: &'static str,
    },
    #[error("tensor {name:?} has {n_dims} dimensions (at most 4 allowed)")]
    TooManyDims { name: String, n_dims: u32 },
    #[error("tensor {name:?} data [{start}, {end}) lies outside the file ({file_len} bytes)")]
    TensorOutOfBounds {
        name: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("general.alignment {0} is not a power of two")]
    BadAlignment(u64),
    #[error("metadata key {0:?} is missing")]
    MissingKey(String),
    #[error("metadata key {key:?} should be {expected}")]
    WrongKeyType { key: String, expected: &'static str },
    #[error("tensor {0:?} is missing")]
    MissingTensor(String),
    #[error("tensor {name:?} has shape {found:?} (innermost first), expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    #[error("architecture {0:?} is not supported (llama-family only)")]
    UnsupportedArchitecture(String),
    #[error("inconsistent hyper-parameters: {0}")]
    BadConfig(String),
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    String(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an unsigned integer, when it is a non-negative integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::I8(v) => Some(v as i64),
            Value::I16(v) => Some(v as i64),
            Value::I32(v) => Some(v as i64),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
    fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
    /// A short human rendering (arrays summarized by length).
    pub fn summary(&self) -> String {
        match self {
            Value::String(s) if s.len() > 80 => format!(
                "{:?}... ({} bytes)",
                &s[..s.floor_char_boundary(80)],
                s.len()
            ),
            Value::String(s) => format!("{s:?}"),
            Value::Array(a) => format!("[{} values]", a.len()),
            Value::Bool(b) => b.to_string(),
            v => v.as_f64().map(|f| f.to_string()).unwrap_or_default(),
        }
    }
}

/// Where one tensor is and what it holds.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// Dimensions, innermost (contiguous) first, as GGUF stores them.
    pub dims: Vec<u64>,
    pub ty: TensorType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// An opened GGUF file: parsed header and a memory map of the data.
pub struct GgufFile {
    path: PathBuf,
    bytes: Bytes,
    pub version: u32,
    pub alignment: u64,
    /// Metadata in file order.
    pub metadata: Vec<(String, Value)>,
    index: BTreeMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    tensor_index: BTreeMap<String, usize>,
}

enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl GgufFile {
    /// Memory-maps and parses `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| GgufError::Io {
            path: path.clone(),
            source,
        };
        let file = std::fs::File::open(&path).map_err(io)?;
        // SAFETY: the map is read-only and lives as long as `GgufFile`. Like every
        // mmap-based model loader we assume nobody truncates or rewrites the file while
        // it is open; the data is copied into owned weights right after loading.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        Self::parse(path, Bytes::Mapped(map))
    }

    /// Parses an in-memory file (tests, embedded data).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, GgufError> {
        Self::parse(PathBuf::from("<memory>"), Bytes::Owned(bytes))
    }

    // tidy: long-function: the GGUF layout read front to back by one cursor: header, metadata,
    // tensor infos, then the data layout, which needs all three (alignment from the metadata,
    // offsets from the infos); each bounds check sits next to the read it guards, and pieces
    // would pass the cursor and three partial tables between them.
    fn parse(path: PathBuf, bytes: Bytes) -> Result<Self, GgufError> {
        let mut r = Reader { b: &bytes, pos: 0 };
        let magic: [u8; 4] = r.take(4, "magic")?.try_into().expect("4 bytes");
        if &magic != MAGIC {
            return Err(GgufError::BadMagic { found: magic });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion(version));
        }
        let n_tensors = r.u64("tensor count")?;
        let n_kv = r.u64("metadata count")?;
        // Every entry takes at least 8+4 bytes (key length + type): bound the count.
        r.check_count(n_kv, 12, "metadata count")?;
        let mut metadata = Vec::with_capacity(n_kv as usize);
        for _ in 0..n_kv {
            let key = r.string("metadata key")?;
            let type_id = r.u32("metadata value type")?;
            let value = r.value(&key, type_id, 0)?;
            metadata.push((key, value));
        }
        r.check_count(n_tensors, 8 + 4 + 4 + 8, "tensor count")?;
        let mut raw = Vec::with_capacity(n_tensors as usize);
        for _ in 0..n_tensors {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims > 4 {
                return Err(GgufError::TooManyDims { name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let type_id = r.u32("tensor type")?;
            let offset = r.u64("tensor offset")?;
            raw.push((name, dims, type_id, offset));
        }
        let index: BTreeMap<String, usize> = metadata
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        let alignment = match index.get("general.alignment") {
            Some(&i) => metadata[i]
                .1
                .as_u64()
                .ok_or_else(|| GgufError::WrongKeyType {
                    key: "general.alignment".into(),
                    expected: "an unsigned integer",
                })?,
            None => DEFAULT_ALIGNMENT,
        };
        if alignment == 0 || !alignment.is_power_of_two() {
            return Err(GgufError::BadAlignment(alignment));
        }
        let data_start = (r.pos as u64).div_ceil(alignment) * alignment;
        let file_len = bytes.len() as u64;
        let mut tensors = Vec::with_capacity(raw.len());
        for (name, dims, type_id, rel) in raw {
            let ty = TensorType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
                name: name.clone(),
                type_id,
            })?;
            let elements = dims
                .iter()
                .try_fold(1u64, |a, d| a.checked_mul(*d))
                .unwrap_or(u64::MAX);
            let n_bytes = ty
                .bytes_for(elements)
                .ok_or_else(|| GgufError::PartialBlock {
                    name: name.clone(),
                    elements,
                    ty: ty.name(),
                })?;
            let start = data_start.saturating_add(rel);
            let end = start.saturating_add(n_bytes);
            if end > file_len {
                return Err(GgufError::TensorOutOfBounds {
                    name,
                    start,
                    end,
                    file_len,
                });
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset: start,
                n_bytes,
            });
        }
        let tensor_index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(GgufFile {
            path,
            bytes,
            version,
            alignment,
            metadata,
            index,
            tensors,
            tensor_index,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// A required unsigned integer.
    pub fn get_u64(&self, key: &str) -> Result<u64, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_u64().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "an unsigned integer",
        })
    }

    /// A required float (integers accepted).
    pub fn get_f64(&self, key: &str) -> Result<f64, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_f64().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "a number",
        })
    }

    /// A required string.
    pub fn get_str(&self, key: &str) -> Result<&str, GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_str().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "a string",
        })
    }

    /// A required array.
    pub fn get_array(&self, key: &str) -> Result<&[Value], GgufError> {
        let v = self
            .get(key)
            .ok_or_else(|| GgufError::MissingKey(key.into()))?;
        v.as_array().ok_or_else(|| GgufError::WrongKeyType {
            key: key.into(),
            expected: "an array",
        })
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The raw bytes of a tensor (bounds were checked when parsing).
    pub fn tensor_bytes(&self, t: &TensorInfo) -> &[u8] {
        &self.bytes[t.offset as usize..(t.offset + t.n_bytes) as usize]
    }

    /// Dequantizes a tensor to f32 (row-major, innermost dimension contiguous).
    pub fn dequantize(&self, t: &TensorInfo) -> Vec<f32> {
        let mut out = vec![0.0; t.n_elements() as usize];
        quant::dequantize(t.ty, self.tensor_bytes(t), &mut out);
        out
    }
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64, what: &'static str) -> Result<&'a [u8], GgufError> {
        let available = (self.b.len() - self.pos) as u64;
        if n > available {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos as u64,
                needed: n,
                available,
            });
        }
        let s = &self.b[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }
    /// Fails early when `count` items of at least `min_size` bytes cannot fit.
    fn check_count(&self, count: u64, min_size: u64, what: &'static str) -> Result<(), GgufError> {
        let available = (self.b.len() - self.pos) as u64;
        let needed = count.saturating_mul(min_size);
        if needed > available {
            return Err(GgufError::Truncated {
                what,
                offset: self.pos as u64,
                needed,
                available,
            });
        }
        Ok(())
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let len = self.u64(what)?;
        let offset = self.pos as u64;
        let b = self.take(len, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| GgufError::BadString { offset })
    }
    fn value(&mut self, key: &str, type_id: u32, depth: u32) -> Result<Value, GgufError> {
        const W: &str = "metadata value";
        let mut fixed = |n: u64| self.take(n, W);
        Ok(match type_id {
            0 => Value::U8(fixed(1)?[0]),
            1 => Value::I8(fixed(1)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(fixed(2)?.try_into().expect("2"))),
            3 => Value::I16(i16::from_le_bytes(fixed(2)?.try_into().expect("2"))),
            4 => Value::U32(u32::from_le_bytes(fixed(4)?.try_into().expect("4"))),
            5 => Value::I32(i32::from_le_bytes(fixed(4)?.try_into().expect("4"))),
            6 => Value::F32(f32::from_le_bytes(fixed(4)?.try_into().expect("4"))),
            7 => Value::Bool(fixed(1)?[0] != 0),
            8 => Value::String(self.string(W)?),
            9 if depth < 4 => {
                let elem = self.u32("array element type")?;
                let n = self.u64("array length")?;
                let min = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    _ => 8,
                };
                self.check_count(n, min, "array length")?;
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.value(key, elem, depth + 1)?);
                }
                Value::Array(v)
            }
            10 => Value::U64(u64::from_le_bytes(fixed(8)?.try_into().expect("8"))),
            11 => Value::I64(i64::from_le_bytes(fixed(8)?.try_into().expect("8"))),
            12 => Value::F64(f64::from_le_bytes(fixed(8)?.try_into().expect("8"))),
            _ => {
                return Err(GgufError::UnknownValueType {
                    key: key.into(),
                    type_id,
                });
            }
        })
    }
}

/// A tensor to write: name, dims (innermost first), type id and encoded bytes.
/// The type id is raw so tests can write types this reader rejects.
#[derive(Clone, Debug)]
pub struct RawTensor {
    pub name: String,
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
}

/// Serializes a GGUF v3 file (alignment 32) into bytes.
pub fn write_gguf(metadata: &[(String, Value)], tensors: &[RawTensor]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    fn value(out: &mut Vec<u8>, v: &Value) {
        match v {
            Value::U8(x) => out.push(*x),
            Value::I8(x) => out.push(*x as u8),
            Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
            Value::Bool(x) => out.push(*x as u8),
            Value::String(s) => string(out, s),
            Value::Array(a) => {
                // An empty array is written as an array of u8.
                out.extend_from_slice(&a.first().map_or(0, Value::type_id).to_le_bytes());
                out.extend_from_slice(&(a.len() as u64).to_le_bytes());
                a.iter().for_each(|x| value(out, x));
            }
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    out.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        string(&mut out, k);
        out.extend_from_slice(&v.type_id().to_le_bytes());
        value(&mut out, v);
    }
    let align = DEFAULT_ALIGNMENT as usize;
    let mut offset = 0usize;
    for t in tensors {
        string(&mut out, &t.name);
        out.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
        t.dims
            .iter()
            .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
        out.extend_from_slice(&t.type_id.to_le_bytes());
        out.extend_from_slice(&(offset as u64).to_le_bytes());
        offset = (offset + t.data.len()).div_ceil(align) * align;
    }
    out.resize(out.len().div_ceil(align) * align, 0);
    for t in tensors {
        out.extend_from_slice(&t.data);
        out.resize(out.len().div_ceil(align) * align, 0);
    }
    out
}
