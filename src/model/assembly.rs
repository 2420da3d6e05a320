//! Assembly: a runnable Walsh model from a [`WalshFile`], checked against its config.
//!
//! Loading is strict where the prototype was silent: every tensor the config implies must be
//! present with the right kind and shape, nothing unexpected may be left over, and every float is
//! finite. A file that passes runs without further checks: the layouts built here
//! (`kernels::layout`) hold what the kernels need.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use crate::config::{ConfigError, ModelConfig};
use crate::format::{FormatError, HalfKind, Payload, Record, WalshFile};
use crate::kernels::layout::{GROUP, GROUP_BYTES, HeadMixer, Int8Data, MAX_TABLE_BYTES, PackedMixer, QuantizedMatrix, RopeTable, TernaryLinear};
use crate::kernels::to_row_quads;

/// Why a file cannot be turned into a model.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum LoadError {
    /// The bytes are not a valid `.walsh` file.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The header is not a config this engine runs.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A tensor the config implies is absent.
    #[error("tensor '{name}' is missing (the config implies it)")]
    MissingTensor {
        /// The tensor's name.
        name: String,
    },
    /// A tensor the config does not account for.
    #[error("tensor '{name}' is not part of a model with this config{hint}")]
    UnexpectedTensor {
        /// The tensor's name.
        name: String,
        /// What it may mean (empty when nothing specific).
        hint: &'static str,
    },
    /// A tensor stored as the wrong kind of record.
    #[error("tensor '{name}' is stored as '{found}' records, expected '{expected}'")]
    WrongKind {
        /// The tensor's name.
        name: String,
        /// The record marker the tensor needs.
        expected: char,
        /// The record marker in the file.
        found: char,
    },
    /// A tensor whose shape disagrees with the config.
    #[error("tensor '{name}' has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// The tensor's name.
        name: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// A tensor with NaN or infinite values.
    #[error("tensor '{name}' contains NaN or infinite values")]
    NonFinite {
        /// The tensor's name.
        name: String,
    },
    /// A layer too wide for the kernels' lookup table.
    #[error("layer '{name}' needs a {needed}-byte lookup table; this engine supports up to {limit} bytes")]
    TooWide {
        /// The layer's weight tensor.
        name: String,
        /// Bytes of lookup table the layer needs.
        needed: usize,
        /// The most this engine supports.
        limit: usize,
    },
}

/// One transformer block, repacked for the kernels (`d` = n_embd, `h` = hidden_dim).
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    /// `[d]` gain of the norm before attention.
    pub(crate) attention_norm: Vec<f32>,
    /// `d → d` query, key, value and output projections.
    pub(crate) wq: TernaryLinear,
    pub(crate) wk: TernaryLinear,
    pub(crate) wv: TernaryLinear,
    pub(crate) wo: TernaryLinear,
    /// The head mixer between attention and `wo`, when the config enables it.
    pub(crate) mixer: Option<PackedMixer>,
    /// `[d]` gain of the norm before the feed-forward block.
    pub(crate) ffn_norm: Vec<f32>,
    /// `d → h` SwiGLU gate and up projections, `h → d` down projection.
    pub(crate) gate: TernaryLinear,
    pub(crate) up: TernaryLinear,
    pub(crate) down: TernaryLinear,
}

impl Layer {
    pub(crate) fn linears(&self) -> [&TernaryLinear; 7] {
        [&self.wq, &self.wk, &self.wv, &self.wo, &self.gate, &self.up, &self.down]
    }
}

/// A loaded model: its config and weights in the kernels' layouts. Build it with
/// [`Model::load`] (or [`Model::load_owned`]), run it with [`Model::forward`] or step by step
/// ([`Model::begin`], [`Model::run_position`], [`Model::finish`]).
#[derive(Debug, Clone)]
pub struct Model {
    /// The header's config (dimensions, context length, vocabulary size).
    pub config: ModelConfig,
    /// `[vocab_size][n_embd]` int8 token embedding (and the output head when tied).
    pub(crate) embedding: QuantizedMatrix,
    /// An untied output head (`E output.weight`); `None` means tied to the embedding.
    pub(crate) output: Option<QuantizedMatrix>,
    /// `n_layer` blocks.
    pub(crate) layers: Vec<Layer>,
    /// `[n_embd]` gain of the norm before the output head.
    pub(crate) final_norm: Vec<f32>,
    /// `[2 · block_size][head_dim / 2]` rotations.
    pub(crate) rope: RopeTable,
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
        LoadError::WrongKind { name: name.to_string(), expected: expected as char, found: record.payload.marker() as char }
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
        // Before unpacking: the values and their packed offsets take 16 bytes per weight, and the
        // table a layer needs depends on its width alone.
        let needed = in_o.div_ceil(GROUP).saturating_mul(GROUP_BYTES);
        if needed > MAX_TABLE_BYTES {
            return Err(LoadError::TooWide { name, needed, limit: MAX_TABLE_BYTES });
        }
        let beta = self.half(&format!("{prefix}.beta"), HalfKind::Beta, &[out_o])?;
        TernaryLinear::pack(in_o, out_o, &t.to_values(), beta).ok_or(LoadError::TooWide { name, needed, limit: MAX_TABLE_BYTES })
    }

    fn quantized(&mut self, name: &str, rows: usize, cols: usize) -> Result<QuantizedMatrix, LoadError> {
        let record = self.take(name)?;
        let Payload::Embedding(e) = &record.payload else {
            return Err(Self::wrong_kind(name, b'E', record));
        };
        Self::shape_check(name, &[rows, cols], vec![e.rows, e.cols])?;
        let inside = self.shared.as_ref().and_then(|(file, owned)| {
            let start = offset_inside(file, &e.data)?;
            Int8Data::shared(owned.clone(), start, e.data.len())
        });
        // Shared bytes were put in row-quad order by `load_owned`; a copy is rearranged here.
        let data = match inside {
            Some(data) => data,
            None if cols.is_multiple_of(2) && rows.checked_mul(cols) == Some(e.data.len()) => {
                let mut bytes = e.data.to_vec();
                to_row_quads(&mut bytes, rows, cols);
                Int8Data::from_bytes(bytes)
            }
            None => Int8Data::from_bytes(Vec::new()),
        };
        let found = data.len();
        // The config makes `cols` even (n_embd is a multiple of 8) and the parser gives `rows · cols` values.
        QuantizedMatrix::from_row_quads(rows, cols, e.scale, data).ok_or_else(|| LoadError::ShapeMismatch {
            name: name.to_string(),
            expected: vec![rows, cols],
            found: vec![found],
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
        let cos = table.iter().step_by(2).copied().collect();
        let sin = table.iter().skip(1).step_by(2).copied().collect();
        let rope = RopeTable::new(hd / 2, 2 * config.block_size, cos, sin).ok_or_else(|| LoadError::ShapeMismatch {
            name: "freqs_cis".to_string(),
            expected: vec![2 * config.block_size, hd / 2, 2],
            found: vec![table.len()],
        })?;

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
    pub(crate) fn output_head(&self) -> &QuantizedMatrix {
        self.output.as_ref().unwrap_or(&self.embedding)
    }

    /// Approximate heap bytes held by the model (the whole file when the embedding lives in it).
    pub fn weight_bytes(&self) -> usize {
        let int8 = |d: &Int8Data| if d.is_shared() { 0 } else { d.len() };
        let embedding = self.embedding.data();
        let mut total = match embedding.is_shared() {
            true => embedding.buffer_bytes(),
            false => int8(embedding),
        };
        total += self.output.as_ref().map_or(0, |o| int8(o.data()));
        total += self.rope.heap_bytes() + 4 * self.final_norm.len();
        for layer in &self.layers {
            total += layer.linears().into_iter().map(TernaryLinear::heap_bytes).sum::<usize>();
            total += 4 * (layer.attention_norm.len() + layer.ffn_norm.len());
            total += layer.mixer.as_ref().map_or(0, PackedMixer::heap_bytes);
        }
        total
    }
}
