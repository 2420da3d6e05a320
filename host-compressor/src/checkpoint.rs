//! PyTorch checkpoints (`torch.save` zip archives) as the Walsh training script writes them:
//! `{"model": state_dict, "model_args": {...}, ...}`.
//!
//! The file is memory-mapped (or given as bytes); tensors are views into it (torch stores zip
//! entries uncompressed), so nothing is copied until a tensor is converted.
//!
//! Limits, so that a hostile file is refused before it costs time or memory: the pickle's own
//! (see [`crate::pickle`]); every state-dict view must fit inside its storage (empty views
//! included), must not have more elements than the storage (no broadcast views), and all views
//! together must not be larger than [`MAX_VIEW_BYTES_PER_FILE_BYTE`] times the file. What the
//! compressor then allocates is therefore proportional to the file's size.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use thiserror::Error;

use crate::pickle::{self, PickleError, StorageType, TensorRef, Value};

/// What `torch.save` in torch < 1.6 (or `_use_new_zipfile_serialization=False`) starts with:
/// pickle protocol 2, then LONG1 of the magic number 0x1950a86a20f9469cfc6c.
const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";
const COMPILE_PREFIX: &str = "_orig_mod.";
/// Bytes of state-dict views allowed per byte of file: 1 for the distinct views (they lie in the
/// file's storages), 1 more for tied weights, which name the same view twice.
pub const MAX_VIEW_BYTES_PER_FILE_BYTE: usize = 2;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("not a PyTorch checkpoint: the file is not a zip archive ({0})")]
    NotZip(String),
    #[error(
        "this checkpoint uses the legacy (pre-1.6) torch format; re-save it with a current torch: \
         python -c \"import torch; torch.save(torch.load('IN.pt', weights_only=False), 'OUT.pt')\""
    )]
    LegacyFormat,
    #[error("the zip archive has no */data.pkl: not a torch.save checkpoint")]
    NoPickle,
    #[error("zip entry {name}: {reason}")]
    BadEntry { name: String, reason: String },
    /// Not the error's `source`: its message is part of this one, and a chain would say it twice.
    #[error("reading data.pkl: {0}")]
    Pickle(PickleError),
    #[error("the checkpoint is not a dict")]
    NotADict,
    #[error("the checkpoint has no \"{0}\" entry (expected a training checkpoint with \"model\" and \"model_args\")")]
    MissingKey(&'static str),
    #[error("\"{0}\" is not a dict")]
    NotADictEntry(&'static str),
    #[error("{what} key {key} is not a string")]
    BadKey { what: &'static str, key: String },
    #[error("state dict entry '{0}' is not a tensor")]
    NotATensor(String),
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    #[error(
        "the state dict's tensors hold {views} bytes, more than twice the file's {file} bytes: repeated or \
         overlapping views are not supported"
    )]
    TooLarge { views: usize, file: usize },
}

impl From<PickleError> for CheckpointError {
    fn from(e: PickleError) -> CheckpointError {
        CheckpointError::Pickle(e)
    }
}

/// The checkpoint's bytes: mapped from a file, or owned.
enum Source {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Source {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Source::Owned(v) => v,
            Source::Mapped(m) => m,
        }
    }
}

/// A parsed checkpoint: its state dict (in order) and `model_args` (in order).
pub struct Checkpoint {
    bytes: Source,
    /// Storage key → byte range of its zip entry.
    storages: HashMap<String, (usize, usize)>,
    /// (name without the `_orig_mod.` prefix, tensor), in state-dict order. Every view has been
    /// checked against its storage.
    pub tensors: Vec<(String, Arc<TensorRef>)>,
    /// `model_args` entries in insertion order.
    pub model_args: Vec<(String, Value)>,
    /// Whether the `_orig_mod.` prefix (torch.compile) was stripped.
    pub stripped_prefix: bool,
}

impl Checkpoint {
    /// Opens a checkpoint file by mapping it into memory: no copy of a file that can be several
    /// hundred megabytes. The file must not be truncated while the checkpoint is in use.
    pub fn open(path: &std::path::Path) -> std::io::Result<Result<Checkpoint, CheckpointError>> {
        let file = std::fs::File::open(path)?;
        if file.metadata()?.len() == 0 {
            // Nothing to map (mapping zero bytes is an error); let the parser say what is wrong.
            return Ok(Checkpoint::parse(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this process; a concurrent truncation by
        // another process is the documented limit (as for any mmap-based model loader).
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Checkpoint::from_source(Source::Mapped(map)))
    }

    /// Parses a checkpoint held in memory.
    pub fn parse(bytes: Vec<u8>) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::from_source(Source::Owned(bytes))
    }

    fn from_source(bytes: Source) -> Result<Checkpoint, CheckpointError> {
        if bytes.starts_with(LEGACY_MAGIC) {
            return Err(CheckpointError::LegacyFormat);
        }
        let mut archive = zip::ZipArchive::new(Cursor::new(&bytes[..])).map_err(|e| CheckpointError::NotZip(e.to_string()))?;
        let mut pickle_range = None;
        let mut storages = HashMap::new();
        for i in 0..archive.len() {
            let entry = archive.by_index_raw(i).map_err(|e| CheckpointError::NotZip(e.to_string()))?;
            let name = entry.name().map_err(|e| CheckpointError::NotZip(e.to_string()))?.to_string();
            let bad = |reason: &str| CheckpointError::BadEntry { name: name.clone(), reason: reason.to_string() };
            let is_pickle = name.ends_with("/data.pkl") && name.matches('/').count() == 1;
            let storage_key = name.split_once("/data/").map(|(_, key)| key.to_string()).filter(|k| !k.contains('/'));
            if !is_pickle && storage_key.is_none() {
                continue;
            }
            if entry.compression() != zip::CompressionMethod::Stored {
                return Err(bad("compressed entries are not supported (torch stores them uncompressed)"));
            }
            let start = entry.data_start().ok_or_else(|| bad("no data offset"))? as usize;
            let len = entry.size() as usize;
            if start.checked_add(len).is_none_or(|end| end > bytes.len()) {
                return Err(bad("entry extends past the end of the file"));
            }
            if is_pickle {
                pickle_range = Some((start, len));
            } else if let Some(key) = storage_key {
                storages.insert(key, (start, len));
            }
        }
        let (start, len) = pickle_range.ok_or(CheckpointError::NoPickle)?;
        let root = pickle::load(&bytes[start..start + len])?;
        if !matches!(root, Value::Dict(_)) {
            return Err(CheckpointError::NotADict);
        }
        let model = match root.get("model") {
            Some(Value::Dict(items)) => Arc::clone(items),
            Some(_) => return Err(CheckpointError::NotADictEntry("model")),
            None => return Err(CheckpointError::MissingKey("model")),
        };
        let Some(args) = root.get("model_args") else {
            return Err(CheckpointError::MissingKey("model_args"));
        };
        let Value::Dict(args) = args else {
            return Err(CheckpointError::NotADictEntry("model_args"));
        };
        let model_args = args
            .iter()
            .map(|(k, v)| match k {
                Value::Str(k) => Ok((k.to_string(), v.clone())),
                other => Err(CheckpointError::BadKey { what: "model_args", key: other.describe() }),
            })
            .collect::<Result<Vec<_>, _>>()?;

        let mut stripped_prefix = false;
        let mut tensors = Vec::with_capacity(model.len());
        for (k, v) in model.iter() {
            let Value::Str(name) = k else { return Err(CheckpointError::BadKey { what: "state dict", key: k.describe() }) };
            let name = match name.strip_prefix(COMPILE_PREFIX) {
                Some(rest) => {
                    stripped_prefix = true;
                    rest.to_string()
                }
                None => name.to_string(),
            };
            let Value::Tensor(t) = v else { return Err(CheckpointError::NotATensor(name)) };
            tensors.push((name, Arc::clone(t)));
        }
        let checkpoint = Checkpoint { bytes, storages, tensors, model_args, stripped_prefix };
        // Each view inside its storage, and all of them together at most twice the file (views
        // do not overlap, except a tied weight's second name): what converting them allocates
        // is then proportional to the file's size, however many names repeat a view.
        let mut total = 0usize;
        for (name, t) in &checkpoint.tensors {
            checkpoint.view_bytes(name, t)?;
            total = total.saturating_add(t.byte_len());
        }
        if total > checkpoint.bytes.len().saturating_mul(MAX_VIEW_BYTES_PER_FILE_BYTE) {
            return Err(CheckpointError::TooLarge { views: total, file: checkpoint.bytes.len() });
        }
        Ok(checkpoint)
    }

    /// The storage bytes of a tensor after checking that the view fits inside them.
    fn view_bytes(&self, name: &str, t: &TensorRef) -> Result<&[u8], CheckpointError> {
        let bad = |reason: String| CheckpointError::BadTensor { name: name.to_string(), reason };
        let &(start, len) =
            self.storages.get(&*t.storage_key).ok_or_else(|| bad(format!("storage {} is missing from the archive", t.storage_key)))?;
        let expected = t.storage_len.checked_mul(t.dtype.element_size()).ok_or_else(|| bad("storage size overflows".into()))?;
        if len < expected {
            return Err(bad(format!("storage holds {len} bytes, {expected} declared")));
        }
        if t.shape.len() != t.strides.len() {
            return Err(bad("shape and stride lengths differ".into()));
        }
        let numel = t.shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("the element count overflows".into()))?;
        // Empty views too: readers slice the storage at the offset.
        if t.offset > t.storage_len {
            return Err(bad(format!("offset {} lies past the end of its {}-element storage", t.offset, t.storage_len)));
        }
        // More elements than the storage has after the offset means a broadcast (stride 0) or
        // overlapping view: converting it would materialise more than the file holds.
        if numel > t.storage_len - t.offset {
            return Err(bad(format!(
                "a view of {numel} elements at offset {} is larger than its storage of {} elements (broadcast or overlapping views are not supported)",
                t.offset, t.storage_len
            )));
        }
        // The largest element index the view touches must lie inside the storage.
        if numel > 0 {
            let mut last = t.offset;
            for (&d, &s) in t.shape.iter().zip(&t.strides) {
                last = (d - 1).checked_mul(s).and_then(|x| x.checked_add(last)).ok_or_else(|| bad("view overflows".into()))?;
            }
            if last >= t.storage_len {
                return Err(bad(format!("view reaches element {last} of a {}-element storage", t.storage_len)));
            }
        }
        Ok(&self.bytes[start..start + expected])
    }

    /// True when two tensors are the same memory (tied weights): same storage, offset, shape, strides.
    pub fn same_memory(a: &TensorRef, b: &TensorRef) -> bool {
        a.storage_key == b.storage_key && a.offset == b.offset && a.shape == b.shape && a.strides == b.strides
    }

    /// The tensor's elements as f32, in row-major order (any strides), without copying the
    /// storage: large embeddings are streamed twice (max, then quantize) instead of held as f32.
    ///
    /// Floating types are widened exactly; complex64 yields (re, im) pairs; integer and bool
    /// tensors are refused (the format has no place for them).
    pub fn f32_values<'s>(&'s self, name: &str, t: &'s TensorRef) -> Result<Box<dyn Iterator<Item = f32> + 's>, CheckpointError> {
        let bytes = self.view_bytes(name, t)?;
        let (lanes, read): (usize, fn(&[u8]) -> f32) = match t.dtype {
            StorageType::F32 => (1, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            StorageType::F16 => (1, |b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
            StorageType::BF16 => (1, |b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
            StorageType::F64 => (1, |b| f64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as f32),
            StorageType::Complex64 => (2, |b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
            other => {
                return Err(CheckpointError::BadTensor {
                    name: name.to_string(),
                    reason: format!("{} tensors cannot be stored in .walsh", other.name()),
                });
            }
        };
        let size = t.dtype.element_size();
        let lane_size = size / lanes;
        if is_contiguous(&t.shape, &t.strides) {
            let start = t.offset * size;
            return Ok(Box::new(bytes[start..start + t.numel() * size].chunks_exact(lane_size).map(read)));
        }
        // Walk the view in row-major order.
        let mut index = vec![0usize; t.shape.len()];
        let elements = (0..t.numel()).map(move |_| {
            let element = t.offset + index.iter().zip(&t.strides).map(|(i, s)| i * s).sum::<usize>();
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
            element
        });
        Ok(Box::new(elements.flat_map(move |e| (0..lanes).map(move |lane| read(&bytes[e * size + lane * lane_size..])))))
    }

    /// The raw little-endian bytes of a contiguous float32 tensor, or `None` for other layouts.
    pub fn contiguous_f32(&self, name: &str, t: &TensorRef) -> Result<Option<&[u8]>, CheckpointError> {
        let bytes = self.view_bytes(name, t)?;
        if t.dtype != StorageType::F32 || !is_contiguous(&t.shape, &t.strides) {
            return Ok(None);
        }
        Ok(Some(&bytes[t.offset * 4..(t.offset + t.numel()) * 4]))
    }

    /// The tensor's elements as an f32 vector (for the small tensors).
    pub fn to_f32(&self, name: &str, t: &TensorRef) -> Result<Vec<f32>, CheckpointError> {
        Ok(self.f32_values(name, t)?.collect())
    }

    /// An int64 tensor's elements (contiguous views only; used for small constant buffers).
    pub fn int64_values(&self, name: &str, t: &TensorRef) -> Result<Vec<i64>, CheckpointError> {
        let bytes = self.view_bytes(name, t)?;
        if t.dtype != StorageType::I64 || !is_contiguous(&t.shape, &t.strides) {
            return Err(CheckpointError::BadTensor { name: name.to_string(), reason: "expected a contiguous int64 tensor".into() });
        }
        let start = t.offset * 8;
        Ok(bytes[start..start + 8 * t.numel()].chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect())
    }
}

fn is_contiguous(shape: &[usize], strides: &[usize]) -> bool {
    let mut expected = 1;
    for (&d, &s) in shape.iter().zip(strides).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected *= d;
    }
    true
}
