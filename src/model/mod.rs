//! A runnable Walsh model: weights assembled from a [`WalshFile`] and checked against its config.
//!
//! Loading is strict where the prototype was silent: every tensor the config implies must be
//! present with the right kind and shape, nothing unexpected may be left over, and every float is
//! finite. A file that passes runs without further checks.

mod forward;
pub mod kernels;
pub mod packed;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub mod simd;

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

pub use forward::{Activations, InferenceError, KvCache};

use crate::config::{ConfigError, ModelConfig};
use crate::format::{FormatError, HalfKind, Payload, Record, WalshFile};
pub use packed::{PackedMixer, TernaryLinear};

/// Why a file cannot be turned into a model.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LoadError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("tensor '{name}' is missing (the config implies it)")]
    MissingTensor { name: String },
    #[error("tensor '{name}' is not part of a model with this config{hint}")]
    UnexpectedTensor { name: String, hint: &'static str },
    #[error("tensor '{name}' is stored as '{found}' records, expected '{expected}'")]
    WrongKind { name: String, expected: char, found: char },
    #[error("tensor '{name}' has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor '{name}' contains NaN or infinite values")]
    NonFinite { name: String },
    #[error("layer '{name}' needs a {needed}-byte lookup table; this engine supports up to {limit} bytes")]
    TooWide { name: String, needed: usize, limit: usize },
}

/// A ternary octonion linear layer `R^(8·in_o) → R^(8·out_o)`.
#[derive(Debug, Clone)]
pub struct OctonionLinear {
    pub in_o: usize,
    pub out_o: usize,
    /// `[8][out_o][in_o]` values in {-1, 0, +1}: part `k`, output row `n`, input column `m`.
    pub weights: Vec<i8>,
    /// Per-row output scale, shared by all 8 output parts.
    pub beta: Vec<f32>,
}

impl OctonionLinear {
    pub fn in_dim(&self) -> usize {
        8 * self.in_o
    }
    pub fn out_dim(&self) -> usize {
        8 * self.out_o
    }
    /// Row `n` of weight part `k`.
    #[inline]
    pub fn row(&self, k: usize, n: usize) -> &[i8] {
        let start = (k * self.out_o + n) * self.in_o;
        &self.weights[start..start + self.in_o]
    }
}

impl TernaryLinear {
    /// The dense form the f32 reference kernel takes.
    pub fn to_reference(&self) -> OctonionLinear {
        OctonionLinear { in_o: self.in_o, out_o: self.out_o, weights: self.to_values(), beta: self.beta.clone() }
    }
}

/// The octonion head mixer: mixes each group of 8 heads like one octonion product.
#[derive(Debug, Clone)]
pub struct HeadMixer {
    pub head_dim: usize,
    /// `[8][head_dim (in)][head_dim (out)]` — used as `z · W[k]`, in × out.
    pub weights: Vec<f32>,
    pub beta: Vec<f32>,
}

/// A symmetric int8 matrix `[rows][cols]` with one scale: the embedding and output head.
///
/// Held in **row quads** for the logits kernel: rows go in blocks of 4, and within a block the
/// values of column pair `p` of rows 0‥3 are 8 consecutive bytes
/// `[r0·c2p, r0·c2p+1, r1·c2p, r1·c2p+1, r2·…, r3·…]`, so one `i16x8.load8x8_s` and one
/// `i32x4.dot_i16x8_s` against the pair `(h2p, h2p+1)` advance four rows' sums at once, each in
/// its own lane (no horizontal sums). Rows after the last whole block stay row-major. `cols` is
/// even (a model's width is a multiple of 8).
#[derive(Debug, Clone)]
pub struct QuantizedMatrix {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    /// The values in row-quad order (see above).
    pub data: Int8Data,
}

impl QuantizedMatrix {
    /// From row-major values (copied into row-quad order).
    pub fn from_rows(rows: usize, cols: usize, scale: f32, values: &[i8]) -> QuantizedMatrix {
        assert!(cols % 2 == 0 && values.len() == rows * cols, "{rows}×{cols} matrix from {} values", values.len());
        Self::from_row_major_bytes(rows, cols, scale, values.iter().map(|&v| v as u8).collect())
    }

    /// From row-major int8 values given as bytes, rearranged in place.
    fn from_row_major_bytes(rows: usize, cols: usize, scale: f32, mut bytes: Vec<u8>) -> QuantizedMatrix {
        to_row_quads(&mut bytes, rows, cols);
        QuantizedMatrix { rows, cols, scale, data: Int8Data::from_bytes(bytes) }
    }

    /// Where value (r, c) is stored in `data`.
    #[inline]
    pub fn index(&self, r: usize, c: usize) -> usize {
        row_quad_index(self.rows, self.cols, r, c)
    }

    /// The values of row `r`, in column order.
    pub fn row(&self, r: usize) -> impl Iterator<Item = i8> + '_ {
        (0..self.cols).map(move |c| self.data[self.index(r, c)])
    }

    /// Rows stored in whole blocks of 4 (the rest are row-major after them).
    pub fn quad_rows(&self) -> usize {
        self.rows / 4 * 4
    }
}

/// Index of value (r, c) of a `rows × cols` matrix in row-quad order ([`QuantizedMatrix`]).
#[inline]
pub fn row_quad_index(rows: usize, cols: usize, r: usize, c: usize) -> usize {
    if r < rows / 4 * 4 { (r / 4) * 4 * cols + (c / 2) * 8 + (r % 4) * 2 + c % 2 } else { r * cols + c }
}

/// Rearranges a row-major `rows × cols` matrix (even `cols`) into row-quad order in place, one
/// block of 4 rows at a time through a buffer of 4 rows.
pub fn to_row_quads(bytes: &mut [u8], rows: usize, cols: usize) {
    assert!(cols % 2 == 0 && bytes.len() >= rows * cols);
    let block = 4 * cols;
    let mut rows4 = vec![0u8; block];
    for quad in bytes[..rows / 4 * block].chunks_exact_mut(block) {
        rows4.copy_from_slice(quad);
        packed::interleave_rows4(&rows4, quad);
    }
}

/// Int8 values, either owned or a range of the `.walsh` bytes the model was loaded from (so the
/// embedding — most of a file — is not held twice in a canister's heap).
#[derive(Debug, Clone)]
pub struct Int8Data {
    bytes: Arc<Vec<u8>>,
    start: usize,
    len: usize,
}

impl Int8Data {
    pub fn from_bytes(bytes: Vec<u8>) -> Int8Data {
        let len = bytes.len();
        Int8Data { bytes: Arc::new(bytes), start: 0, len }
    }
    /// Whether these values live inside the file bytes rather than in a copy.
    pub fn is_shared(&self) -> bool {
        self.bytes.len() != self.len
    }
}

impl std::ops::Deref for Int8Data {
    type Target = [i8];
    fn deref(&self) -> &[i8] {
        let bytes = &self.bytes[self.start..self.start + self.len];
        // SAFETY: i8 and u8 have the same size, alignment and validity.
        unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<i8>(), bytes.len()) }
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attention_norm: Vec<f32>,
    pub wq: TernaryLinear,
    pub wk: TernaryLinear,
    pub wv: TernaryLinear,
    pub wo: TernaryLinear,
    pub mixer: Option<PackedMixer>,
    pub ffn_norm: Vec<f32>,
    pub gate: TernaryLinear,
    pub up: TernaryLinear,
    pub down: TernaryLinear,
}

impl Layer {
    pub fn linears(&self) -> [&TernaryLinear; 7] {
        [&self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down]
    }
}

/// RoPE rotation table: for position t and pair i, `cos[t·half + i]`, `sin[t·half + i]`.
#[derive(Debug, Clone)]
pub struct RopeTable {
    pub half: usize,
    pub positions: usize,
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct Model {
    pub config: ModelConfig,
    pub embedding: QuantizedMatrix,
    /// An untied output head (`E output.weight`); `None` means tied to the embedding.
    pub output: Option<QuantizedMatrix>,
    pub layers: Vec<Layer>,
    pub final_norm: Vec<f32>,
    pub rope: RopeTable,
}

/// Hands out records by name and remembers which were used.
struct Records<'f, 'a> {
    by_name: HashMap<&'f str, &'f Record<'a>>,
    /// The file bytes, when the model may keep int8 payloads inside them.
    shared: Option<(&'f [u8], Arc<Vec<u8>>)>,
}

impl<'f, 'a> Records<'f, 'a> {
    fn take(&mut self, name: &str) -> Result<&'f Record<'a>, LoadError> {
        self.by_name.remove(name).ok_or_else(|| LoadError::MissingTensor { name: name.to_string() })
    }

    fn shape_check(name: &str, expected: &[usize], found: Vec<usize>) -> Result<(), LoadError> {
        if found != expected {
            return Err(LoadError::ShapeMismatch { name: name.to_string(), expected: expected.to_vec(), found });
        }
        Ok(())
    }

    fn wrong_kind(name: &str, expected: u8, record: &Record<'_>) -> LoadError {
        LoadError::WrongKind {
            name: name.to_string(),
            expected: expected as char,
            found: record.payload.marker() as char,
        }
    }

    fn half(&mut self, name: &str, kind: HalfKind, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        let record = self.take(name)?;
        match &record.payload {
            Payload::Half { kind: k, array } if *k == kind => {
                Self::shape_check(name, shape, array.shape.clone())?;
                finite(name, array.f16_to_f32())
            }
            _ => Err(Self::wrong_kind(name, kind.marker(), record)),
        }
    }

    fn linear(&mut self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<TernaryLinear, LoadError> {
        let name = format!("{prefix}.weight");
        let (in_o, out_o) = (in_dim / 8, out_dim / 8);
        let record = self.take(&name)?;
        let Payload::Ternary(t) = &record.payload else {
            return Err(Self::wrong_kind(&name, b'B', record));
        };
        Self::shape_check(&name, &[8, out_o, in_o], t.shape.to_vec())?;
        // Before unpacking: the values and their packed offsets take 16 bytes per weight.
        let needed = in_o.div_ceil(packed::GROUP) * packed::GROUP_BYTES;
        if needed > packed::MAX_TABLE_BYTES {
            return Err(LoadError::TooWide { name, needed, limit: packed::MAX_TABLE_BYTES });
        }
        let beta = self.half(&format!("{prefix}.beta"), HalfKind::Beta, &[out_o])?;
        Ok(TernaryLinear::pack(in_o, out_o, &t.to_values(), beta))
    }

    fn quantized(&mut self, name: &str, rows: usize, cols: usize) -> Result<QuantizedMatrix, LoadError> {
        let record = self.take(name)?;
        let Payload::Embedding(e) = &record.payload else {
            return Err(Self::wrong_kind(name, b'E', record));
        };
        Self::shape_check(name, &[rows, cols], vec![e.rows, e.cols])?;
        let inside = self.shared.as_ref().and_then(|(file, owned)| {
            let start = offset_inside(file, &e.data)?;
            Some(Int8Data { bytes: owned.clone(), start, len: e.data.len() })
        });
        // Shared bytes were put in row-quad order by `load_owned`; a copy is rearranged here.
        Ok(match inside {
            Some(data) => QuantizedMatrix { rows, cols, scale: e.scale, data },
            None => QuantizedMatrix::from_row_major_bytes(rows, cols, e.scale, e.data.to_vec()),
        })
    }
}

fn finite(name: &str, values: Vec<f32>) -> Result<Vec<f32>, LoadError> {
    if values.iter().all(|v| v.is_finite()) { Ok(values) } else { Err(LoadError::NonFinite { name: name.to_string() }) }
}

/// The records loaded as [`QuantizedMatrix`] (kept in row-quad order).
const EMBEDDING: &str = "tok_embeddings.weight";
const OUTPUT: &str = "output.weight";

/// Where `part` starts inside `file`, if it is a slice of it.
fn offset_inside(file: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(file.as_ptr() as usize)?;
    (start.checked_add(part.len())? <= file.len()).then_some(start)
}

impl Model {
    /// Parses and assembles a model from the bytes of a `.walsh` file.
    pub fn load(bytes: &[u8]) -> Result<Model, LoadError> {
        Model::from_file(&WalshFile::parse(bytes)?)
    }

    /// Like [`Model::load`], but keeps the file bytes and reads the int8 embedding (and output
    /// head) in place instead of copying them: the heap holds the file once, not twice.
    pub fn load_owned(mut bytes: Vec<u8>) -> Result<Model, LoadError> {
        // The int8 matrices go into row-quad order in place (see [`QuantizedMatrix`]) before
        // the bytes are shared; a first parse (it copies nothing) finds them.
        let matrices = {
            let file = WalshFile::parse(&bytes)?;
            file.records
                .iter()
                .filter(|r| [EMBEDDING, OUTPUT].contains(&r.name.as_ref()))
                .filter_map(|r| match &r.payload {
                    // Only values inside `bytes`, as `Records::quantized` will read them.
                    Payload::Embedding(e) if e.cols % 2 == 0 && Some(e.data.len()) == e.rows.checked_mul(e.cols) => {
                        Some((offset_inside(&bytes, &e.data)?, e.rows, e.cols))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        for (start, rows, cols) in matrices {
            // In bounds: the parser returned a slice of `bytes` of rows · cols values.
            to_row_quads(&mut bytes[start..start + rows * cols], rows, cols);
        }
        let owned = Arc::new(bytes);
        let file = WalshFile::parse(&owned)?;
        Model::assemble(&file, Some((owned.as_slice(), owned.clone())))
    }

    /// Assembles a model from a parsed file, checking it against its config.
    pub fn from_file(file: &WalshFile<'_>) -> Result<Model, LoadError> {
        Model::assemble(file, None)
    }

    fn assemble(file: &WalshFile<'_>, shared: Option<(&[u8], Arc<Vec<u8>>)>) -> Result<Model, LoadError> {
        let config = ModelConfig::from_json(&file.header_json)?;
        let mut records = Records { by_name: file.records.iter().map(|r| (r.name.as_ref(), r)).collect(), shared };
        let (d, hd, hidden) = (config.n_embd, config.head_dim(), config.hidden_dim());

        let rope_record = records.take("freqs_cis")?;
        let Payload::Rope(rope) = &rope_record.payload else {
            return Err(Records::wrong_kind("freqs_cis", b'R', rope_record));
        };
        // The training code builds 2·block_size rows; we only ever use the first block_size.
        Records::shape_check("freqs_cis", &[2 * config.block_size, hd / 2, 2], rope.shape.clone())?;
        let table = finite("freqs_cis", rope.f32_values())?;
        let rope = RopeTable {
            half: hd / 2,
            positions: 2 * config.block_size,
            cos: table.iter().step_by(2).copied().collect(),
            sin: table.iter().skip(1).step_by(2).copied().collect(),
        };

        let embedding = records.quantized(EMBEDDING, config.vocab_size, d)?;
        let output = match records.by_name.contains_key(OUTPUT) {
            true => Some(records.quantized(OUTPUT, config.vocab_size, d)?),
            false => None,
        };

        let mut layers = Vec::with_capacity(config.n_layer);
        for l in 0..config.n_layer {
            let attn = format!("layers.{l}.attention");
            let ffn = format!("layers.{l}.feed_forward");
            let attention_norm = records.half(&format!("layers.{l}.attention_norm.weight"), HalfKind::Norm, &[d])?;
            let wq = records.linear(&format!("{attn}.wq"), d, d)?;
            let wk = records.linear(&format!("{attn}.wk"), d, d)?;
            let wv = records.linear(&format!("{attn}.wv"), d, d)?;
            let wo = records.linear(&format!("{attn}.wo"), d, d)?;
            let mixer = if config.head_mixing {
                Some(PackedMixer::pack(&HeadMixer {
                    head_dim: hd,
                    weights: records.half(&format!("{attn}.head_mixer.W"), HalfKind::MixerWeight, &[8, hd, hd])?,
                    beta: records.half(&format!("{attn}.head_mixer.beta"), HalfKind::MixerBeta, &[hd])?,
                }))
            } else {
                None
            };
            let ffn_norm = records.half(&format!("layers.{l}.ffn_norm.weight"), HalfKind::Norm, &[d])?;
            let gate = records.linear(&format!("{ffn}.gate_proj"), d, hidden)?;
            let up = records.linear(&format!("{ffn}.up_proj"), d, hidden)?;
            let down = records.linear(&format!("{ffn}.down_proj"), hidden, d)?;
            layers.push(Layer { attention_norm, wq, wk, wv, wo, mixer, ffn_norm, gate, up, down });
        }
        let final_norm = records.half("norm.weight", HalfKind::Norm, &[d])?;

        // Report leftovers in file order so the message names the first surprise.
        if let Some(extra) = file.records.iter().find(|r| records.by_name.contains_key(r.name.as_ref())) {
            let hint = if extra.name.contains("head_mixer") {
                " (head mixer weights, but the header does not enable head_mixing)"
            } else if extra.name.starts_with("layers.") {
                " (more layers than n_layer, or a layer kind this engine does not run)"
            } else {
                ""
            };
            return Err(LoadError::UnexpectedTensor { name: extra.name.to_string(), hint });
        }
        Ok(Model { config, embedding, output, layers, final_norm, rope })
    }

    /// The matrix whose rows give the output logits.
    pub fn output_head(&self) -> &QuantizedMatrix {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Approximate heap bytes held by the model (the whole file when the embedding lives in it).
    pub fn weight_bytes(&self) -> usize {
        let int8 = |d: &Int8Data| if d.is_shared() { 0 } else { d.len };
        let mut total = match self.embedding.data.is_shared() {
            true => self.embedding.data.bytes.len(),
            false => int8(&self.embedding.data),
        };
        total += self.output.as_ref().map_or(0, |o| int8(&o.data));
        total += 4 * (self.rope.cos.len() + self.rope.sin.len() + self.final_norm.len());
        for layer in &self.layers {
            total += layer.linears().into_iter().map(TernaryLinear::heap_bytes).sum::<usize>();
            total += 4 * (layer.attention_norm.len() + layer.ffn_norm.len());
            total += layer.mixer.as_ref().map_or(0, PackedMixer::heap_bytes);
        }
        total
    }

    /// Bytes of lookup table the widest layer needs.
    pub fn table_bytes(&self) -> usize {
        self.layers.iter().flat_map(|l| l.linears()).map(TernaryLinear::table_bytes).max().unwrap_or(0)
    }
}
