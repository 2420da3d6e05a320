//! A runnable Walsh model: weights assembled from a [`WalshFile`] and checked against its config.
//!
//! Loading is strict where the prototype was silent: every tensor the config implies must be
//! present with the right kind and shape, nothing unexpected may be left over, and every float is
//! finite. A file that passes runs without further checks.

mod forward;
pub mod kernels;

use std::collections::HashMap;

use thiserror::Error;

pub use forward::{Activations, InferenceError, KvCache};

use crate::config::{ConfigError, ModelConfig};
use crate::format::{FormatError, HalfKind, Payload, Record, WalshFile};

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

/// The octonion head mixer: mixes each group of 8 heads like one octonion product.
#[derive(Debug, Clone)]
pub struct HeadMixer {
    pub head_dim: usize,
    /// `[8][head_dim (in)][head_dim (out)]` — used as `z · W[k]`, in × out.
    pub weights: Vec<f32>,
    pub beta: Vec<f32>,
}

/// A symmetric int8 matrix `[rows][cols]` with one scale: the embedding and output head.
#[derive(Debug, Clone)]
pub struct QuantizedMatrix {
    pub rows: usize,
    pub cols: usize,
    pub scale: f32,
    pub data: Vec<i8>,
}

impl QuantizedMatrix {
    pub fn row(&self, r: usize) -> &[i8] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }
}

#[derive(Debug, Clone)]
pub struct Layer {
    pub attention_norm: Vec<f32>,
    pub wq: OctonionLinear,
    pub wk: OctonionLinear,
    pub wv: OctonionLinear,
    pub wo: OctonionLinear,
    pub mixer: Option<HeadMixer>,
    pub ffn_norm: Vec<f32>,
    pub gate: OctonionLinear,
    pub up: OctonionLinear,
    pub down: OctonionLinear,
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

    fn linear(&mut self, prefix: &str, in_dim: usize, out_dim: usize) -> Result<OctonionLinear, LoadError> {
        let name = format!("{prefix}.weight");
        let (in_o, out_o) = (in_dim / 8, out_dim / 8);
        let record = self.take(&name)?;
        let Payload::Ternary(t) = &record.payload else {
            return Err(Self::wrong_kind(&name, b'B', record));
        };
        Self::shape_check(&name, &[8, out_o, in_o], t.shape.to_vec())?;
        let beta = self.half(&format!("{prefix}.beta"), HalfKind::Beta, &[out_o])?;
        Ok(OctonionLinear { in_o, out_o, weights: t.to_values(), beta })
    }

    fn quantized(&mut self, name: &str, rows: usize, cols: usize) -> Result<QuantizedMatrix, LoadError> {
        let record = self.take(name)?;
        let Payload::Embedding(e) = &record.payload else {
            return Err(Self::wrong_kind(name, b'E', record));
        };
        Self::shape_check(name, &[rows, cols], vec![e.rows, e.cols])?;
        Ok(QuantizedMatrix {
            rows,
            cols,
            scale: e.scale,
            data: e.data.iter().map(|&b| b as i8).collect(),
        })
    }
}

fn finite(name: &str, values: Vec<f32>) -> Result<Vec<f32>, LoadError> {
    if values.iter().all(|v| v.is_finite()) {
        Ok(values)
    } else {
        Err(LoadError::NonFinite { name: name.to_string() })
    }
}

impl Model {
    /// Parses and assembles a model from the bytes of a `.walsh` file.
    pub fn load(bytes: &[u8]) -> Result<Model, LoadError> {
        Model::from_file(&WalshFile::parse(bytes)?)
    }

    /// Assembles a model from a parsed file, checking it against its config.
    pub fn from_file(file: &WalshFile<'_>) -> Result<Model, LoadError> {
        let config = ModelConfig::from_json(&file.header_json)?;
        let mut records = Records { by_name: file.records.iter().map(|r| (r.name.as_ref(), r)).collect() };
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

        let embedding = records.quantized("tok_embeddings.weight", config.vocab_size, d)?;
        let output = match records.by_name.contains_key("output.weight") {
            true => Some(records.quantized("output.weight", config.vocab_size, d)?),
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
                Some(HeadMixer {
                    head_dim: hd,
                    weights: records.half(&format!("{attn}.head_mixer.W"), HalfKind::MixerWeight, &[8, hd, hd])?,
                    beta: records.half(&format!("{attn}.head_mixer.beta"), HalfKind::MixerBeta, &[hd])?,
                })
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

    /// Approximate heap bytes held by the weights.
    pub fn weight_bytes(&self) -> usize {
        let lin = |l: &OctonionLinear| l.weights.len() + 4 * l.beta.len();
        let mut total = self.embedding.data.len() + self.output.as_ref().map_or(0, |o| o.data.len());
        total += 4 * (self.rope.cos.len() + self.rope.sin.len() + self.final_norm.len());
        for layer in &self.layers {
            total += [&layer.wq, &layer.wk, &layer.wv, &layer.wo, &layer.gate, &layer.up, &layer.down]
                .into_iter()
                .map(lin)
                .sum::<usize>();
            total += 4 * (layer.attention_norm.len() + layer.ffn_norm.len());
            total += layer.mixer.as_ref().map_or(0, |m| 4 * (m.weights.len() + m.beta.len()));
        }
        total
    }
}
