//! The records and arrays of a `.walsh` file, and the format's constants (the reader in
//! `parse.rs` and the writer in `write.rs` work on these).

use std::borrow::Cow;

/// The four magic bytes. The project was called SpinNet when the format was born.
pub const MAGIC: [u8; 4] = *b"SPIN";
/// The four bytes that close the record list.
pub const END_TAG: [u8; 4] = *b"END!";
/// The version this crate writes.
pub const WRITE_VERSION: u16 = 4;
/// Longest JSON header we accept (real ones are ~300 bytes).
pub const MAX_HEADER_LEN: usize = 1 << 20;
/// Most dimensions an array block may declare.
pub const MAX_NDIM: usize = 8;

/// A parsed `.walsh` file. Payloads borrow from the input where the encoding allows it.
#[derive(Debug, Clone, PartialEq)]
pub struct WalshFile<'a> {
    /// Format version found in the header (2 or 4).
    pub version: u16,
    /// The JSON header exactly as stored (the training run's `model_args`).
    pub header_json: Cow<'a, str>,
    /// Records in file order (state-dict order).
    pub records: Vec<Record<'a>>,
}

/// One named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<'a> {
    /// The tensor's name (e.g. `layers.0.attention.wq.weight`).
    pub name: Cow<'a, str>,
    /// Its values.
    pub payload: Payload<'a>,
}

/// What a record holds; the marker byte is implied by the variant (and [`HalfKind`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Payload<'a> {
    /// `B` (or `T` in version 2): a ternary octonion weight of shape `[8, out_o, in_o]`.
    Ternary(TernaryTensor<'a>),
    /// `E`: a symmetric per-tensor int8 matrix `[rows, cols]`; value = q · scale.
    Embedding(QuantizedMatrix<'a>),
    /// `N`, `S`, `H`, `h`: fp16 arrays.
    Half {
        /// Which fp16 record (its marker).
        kind: HalfKind,
        /// The values.
        array: Array<'a>,
    },
    /// `R`: the RoPE table as f32 `[positions, head_dim/2, 2]` (cos, sin).
    Rope(Array<'a>),
}

/// The fp16 record kinds, which differ only in marker and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HalfKind {
    /// `N`: an RMSNorm gain.
    Norm,
    /// `S`: the per-row output scale β of a ternary linear layer.
    Beta,
    /// `H`: the head mixer's weights `[8, head_dim, head_dim]`.
    MixerWeight,
    /// `h`: the head mixer's output scale `[head_dim]`.
    MixerBeta,
}

impl HalfKind {
    /// The record's marker byte (`N`, `S`, `H`, `h`).
    pub fn marker(self) -> u8 {
        match self {
            HalfKind::Norm => b'N',
            HalfKind::Beta => b'S',
            HalfKind::MixerWeight => b'H',
            HalfKind::MixerBeta => b'h',
        }
    }
}

impl Payload<'_> {
    /// The marker byte this payload is written with in version 4.
    pub fn marker(&self) -> u8 {
        match self {
            Payload::Ternary(_) => b'B',
            Payload::Embedding(_) => b'E',
            Payload::Half { kind, .. } => kind.marker(),
            Payload::Rope(_) => b'R',
        }
    }

    /// Logical shape of the tensor.
    pub fn shape(&self) -> Vec<usize> {
        match self {
            Payload::Ternary(t) => t.shape.to_vec(),
            Payload::Embedding(e) => vec![e.rows, e.cols],
            Payload::Half { array, .. } | Payload::Rope(array) => array.shape.clone(),
        }
    }
}

/// Element types of an array block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// Signed 8-bit integer (code 0).
    I8 = 0,
    /// Signed 32-bit integer, little-endian (code 1).
    I32 = 1,
    /// IEEE half precision, little-endian (code 2).
    F16 = 2,
    /// IEEE single precision, little-endian (code 3).
    F32 = 3,
}

impl Dtype {
    /// The dtype of a code byte; `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Dtype> {
        match code {
            0 => Some(Dtype::I8),
            1 => Some(Dtype::I32),
            2 => Some(Dtype::F16),
            3 => Some(Dtype::F32),
            _ => None,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::I8 => 1,
            Dtype::F16 => 2,
            Dtype::I32 | Dtype::F32 => 4,
        }
    }

    /// The numpy-style name (`int8`, `int32`, `float16`, `float32`).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::I8 => "int8",
            Dtype::I32 => "int32",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
        }
    }
}

/// A typed, shaped block of little-endian element bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Array<'a> {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions, outermost first (row-major).
    pub shape: Vec<usize>,
    /// `element_count · dtype.size()` bytes.
    pub data: Cow<'a, [u8]>,
}

impl Array<'_> {
    /// The product of the shape (1 for a scalar).
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// fp16 elements widened to f32 (empty if the dtype is not fp16).
    pub fn f16_to_f32(&self) -> Vec<f32> {
        if self.dtype != Dtype::F16 {
            return Vec::new();
        }
        self.data.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
    }

    /// f32 elements (empty if the dtype is not f32).
    pub fn f32_values(&self) -> Vec<f32> {
        if self.dtype != Dtype::F32 {
            return Vec::new();
        }
        self.data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }
}

/// An int8 matrix with one f32 scale (the embedding, and an untied output head).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedMatrix<'a> {
    /// Value = q · scale (positive, finite).
    pub scale: f32,
    /// Rows (the vocabulary for an embedding).
    pub rows: usize,
    /// Columns (the model's width).
    pub cols: usize,
    /// `rows * cols` bytes, each an `i8`.
    pub data: Cow<'a, [u8]>,
}

/// A ternary weight `[8, out_o, in_o]` as a presence bitmask plus one sign bit per non-zero.
///
/// Flat index p = (part · out_o + row) · in_o + col; bit p of the mask is byte p/8, bit p%8
/// (LSB first). The k-th set bit's sign is bit k%8 of sign byte k/8: 1 = +1, 0 = −1.
#[derive(Debug, Clone, PartialEq)]
pub struct TernaryTensor<'a> {
    /// `[8, out_o, in_o]`.
    pub shape: [usize; 3],
    /// Non-zero weights (set bits of the mask).
    pub nnz: u32,
    /// One presence bit per weight, `ceil(elements / 8)` bytes.
    pub bitmask: Cow<'a, [u8]>,
    /// One sign bit per non-zero weight, `ceil(nnz / 8)` bytes.
    pub signs: Cow<'a, [u8]>,
}

impl TernaryTensor<'static> {
    /// Encodes dense values in `{-1, 0, +1}` (row-major `[8, out_o, in_o]`).
    ///
    /// Returns `None` if the length does not match the shape or a value is outside {-1, 0, 1}.
    pub fn from_values(shape: [usize; 3], values: &[i8]) -> Option<TernaryTensor<'static>> {
        let total = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
        if values.len() != total {
            return None;
        }
        let mut bitmask = vec![0u8; total.div_ceil(8)];
        let mut signs = Vec::with_capacity(total / 16 + 1);
        let mut nnz: usize = 0;
        for (p, &v) in values.iter().enumerate() {
            match v {
                0 => {}
                1 | -1 => {
                    bitmask[p >> 3] |= 1 << (p & 7);
                    if nnz & 7 == 0 {
                        signs.push(0);
                    }
                    if v == 1 {
                        *signs.last_mut()? |= 1 << (nnz & 7);
                    }
                    nnz += 1;
                }
                _ => return None,
            }
        }
        Some(TernaryTensor { shape, nnz: u32::try_from(nnz).ok()?, bitmask: Cow::Owned(bitmask), signs: Cow::Owned(signs) })
    }
}

impl TernaryTensor<'_> {
    /// `8 · out_o · in_o`.
    pub fn element_count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Dense values in `{-1, 0, +1}`, row-major `[8, out_o, in_o]`.
    ///
    /// The tensor must have come from the parser or [`TernaryTensor::from_values`], which
    /// guarantee that the mask and sign lengths match; extra sign bits are read as −1.
    pub fn to_values(&self) -> Vec<i8> {
        let total = self.element_count();
        let mut out = vec![0i8; total];
        let mut k = 0usize;
        for (p, v) in out.iter_mut().enumerate() {
            let present = self.bitmask.get(p >> 3).is_some_and(|b| b >> (p & 7) & 1 == 1);
            if present {
                let positive = self.signs.get(k >> 3).is_some_and(|b| b >> (k & 7) & 1 == 1);
                *v = if positive { 1 } else { -1 };
                k += 1;
            }
        }
        out
    }

    /// Fraction of zero weights.
    pub fn sparsity(&self) -> f64 {
        let total = self.element_count();
        if total == 0 {
            return 0.0;
        }
        1.0 - self.nnz as f64 / total as f64
    }
}
