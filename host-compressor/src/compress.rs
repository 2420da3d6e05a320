//! Checkpoint → `.walsh`, reproducing the Python compressor's bytes for every model it handles
//! correctly, and refusing (by name) what the engine cannot run instead of dropping tensors.

use std::borrow::Cow;

use serde::Serialize;
use thiserror::Error;
use walsh_engine::format::{Array, Dtype, HalfKind, Payload, QuantizedMatrix, Record, TernaryTensor, WalshFile};
use walsh_engine::model::{LoadError, Model};
use walsh_engine::octonion::SIGN;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::pickle::{TensorRef, Value};

#[derive(Debug, Error)]
pub enum CompressError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("tensor '{name}' has shape {shape:?}; octonion weights must be [8, out, in] (widths divisible by 8)")]
    NotOctonion { name: String, shape: Vec<usize> },
    #[error("tensor '{name}' has shape {shape:?}, expected {expected}")]
    BadShape { name: String, shape: Vec<usize>, expected: &'static str },
    #[error("tensor '{name}' contains NaN or infinite values")]
    NonFinite { name: String },
    #[error("tensor '{0}' is not part of an octonion Walsh model (the Python compressor would drop it silently)")]
    UnknownTensor(String),
    #[error("'{0}' does not hold the octonion constants every Walsh model uses")]
    WrongConstants(String),
    #[error("model_args cannot be written as JSON: {0}")]
    Header(String),
    /// Not the error's `source`: its message is part of this one, and a chain would say it twice.
    #[error("the result would not be a runnable model: {0}")]
    NotRunnable(LoadError),
}

impl From<LoadError> for CompressError {
    fn from(e: LoadError) -> CompressError {
        CompressError::NotRunnable(e)
    }
}

/// What happened to one tensor, for the log and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct TensorReport {
    pub name: String,
    /// ROPE, EMBED, BITMASK, SCALE_BETA, NORM, HEAD_MIXER, HEAD_MIXER_BETA or SKIP.
    pub kind: &'static str,
    pub shape: Vec<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sparsity: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonzero: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// The converted model, not yet checked or written: the caller frees the checkpoint first, so
/// that the checkpoint and the checked model never share the peak of memory.
pub struct Compressed {
    pub file: WalshFile<'static>,
    pub tensors: Vec<TensorReport>,
}

impl Compressed {
    /// Refuses files the engine could not run (the Python compressor writes them anyway).
    pub fn check_runnable(&self) -> Result<(), CompressError> {
        Model::from_file(&self.file)?;
        Ok(())
    }

    /// Checked, in memory (for tests and small models).
    pub fn into_bytes(self) -> Result<Vec<u8>, CompressError> {
        self.check_runnable()?;
        Ok(self.file.to_bytes().map_err(LoadError::from)?)
    }
}

const TERNARY_LAYERS: [&str; 7] = ["wq", "wk", "wv", "wo", "gate_proj", "up_proj", "down_proj"];

fn flag(args: &[(String, Value)], key: &str) -> bool {
    args.iter().any(|(k, v)| k == key && matches!(v, Value::Bool(true)))
}

/// Refuses model families the engine does not run, naming them.
fn check_supported(ckpt: &Checkpoint) -> Result<(), CompressError> {
    let args = &ckpt.model_args;
    if let Some((_, Value::Str(algebra))) = args.iter().find(|(k, _)| k == "algebra")
        && &**algebra != "octonion"
    {
        return Err(CompressError::Unsupported(format!("the {algebra} algebra (only octonion models are supported)")));
    }
    for (key, what) in [
        ("hash_embeddings", "hash embeddings"),
        ("use_moe", "mixture-of-experts layers (MoE)"),
        ("use_channel_mod", "channel modulation"),
        ("use_ssm", "state-space layers"),
    ] {
        if flag(args, key) {
            return Err(CompressError::Unsupported(format!("{what} (model_args \"{key}\": true)")));
        }
    }
    for (name, _) in &ckpt.tensors {
        let feature = if name.contains("tok_embeddings.emb_tables") || name.contains("tok_embeddings.importance") || name.contains("all_indices") {
            Some("hash embeddings")
        } else if ["stream_proj", "stream_merge", "H_res", "H_pre", "H_post"].iter().any(|k| name.contains(k)) {
            Some("mHC multi-stream residuals")
        } else if name.contains("experts") || name.contains("router") {
            Some("mixture-of-experts layers (MoE)")
        } else if name.contains(".inner.") || name.ends_with(".alpha") {
            Some("the Hadamard algebra")
        } else if name.contains("channel_mod") {
            Some("channel modulation")
        } else {
            None
        };
        if let Some(feature) = feature {
            return Err(CompressError::Unsupported(format!("{feature} (tensor '{name}')")));
        }
    }
    Ok(())
}

fn finite(name: &str, values: &[f32]) -> Result<(), CompressError> {
    if values.iter().all(|v| v.is_finite()) { Ok(()) } else { Err(CompressError::NonFinite { name: name.to_string() }) }
}

/// Rounds half to even, for |x| ≤ 2²²: adding and removing 1.5·2²³ leaves no fraction bits,
/// so the FPU's round-to-nearest-even does the rounding. `f32::round_ties_even` compiles to a
/// libm call on baseline x86-64, which made it the compressor's hottest function.
#[inline(always)]
fn round_half_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// T = clamp(round_half_even(W / γ), −1, 1) with γ = mean|W| + 1e-8 over the whole tensor, in f32
/// as torch computes it (a sum of |W|, divided by the count, plus 1e-8).
pub fn ternarize(values: &[f32]) -> Vec<i8> {
    let sum: f64 = values.iter().map(|v| f64::from(v.abs())).sum();
    let gamma = (sum as f32) / values.len().max(1) as f32 + 1e-8f32;
    // Clamping to ±2 first keeps the argument in the fast rounding's range without changing the result.
    values.iter().map(|&w| round_half_even_small((w / gamma).clamp(-2.0, 2.0)).clamp(-1.0, 1.0) as i8).collect()
}

/// Symmetric per-tensor int8: scale = max|E| / 127 (computed in double precision, as Python
/// does), q = clamp(round_half_even(E / f32(scale)), −127, 127).
///
/// Takes a way to produce the values twice, so a 100 MB embedding is never held as f32.
pub fn quantize_int8<I: Iterator<Item = f32>>(mut values: impl FnMut() -> I) -> (f32, Vec<u8>) {
    let mut max = 0.0f32;
    let mut count = 0usize;
    for v in values() {
        max = max.max(v.abs());
        count += 1;
    }
    let scale = if max == 0.0 { 1.0 } else { f64::from(max) / 127.0 };
    let scale32 = scale as f32;
    let mut q = Vec::with_capacity(count);
    q.extend(values().map(|e| round_half_even_small((e / scale32).clamp(-128.0, 128.0)).clamp(-127.0, 127.0) as i8 as u8));
    (scale32, q)
}

fn half_array(values: &[f32], shape: Vec<usize>) -> Array<'static> {
    let data = values.iter().flat_map(|&v| half::f16::from_f32(v).to_le_bytes()).collect();
    Array { dtype: Dtype::F16, shape, data: Cow::Owned(data) }
}

/// Converts a checkpoint. `progress` is called with the bytes of each tensor as it is done.
pub fn compress(ckpt: &Checkpoint, mut progress: impl FnMut(usize)) -> Result<Compressed, CompressError> {
    check_supported(ckpt)?;
    let header_json = crate::python_json::dumps(&Value::dict(ckpt.model_args.iter().map(|(k, v)| (Value::str(k), v.clone())).collect()))
        .map_err(CompressError::Header)?;

    let embedding = ckpt.tensors.iter().find(|(n, _)| n == "tok_embeddings.weight").map(|(_, t)| t);
    let tied = |t: &TensorRef| embedding.is_some_and(|e| Checkpoint::same_memory(e, t));
    let mut records = Vec::new();
    let mut reports = Vec::new();
    for (name, tensor) in &ckpt.tensors {
        let shape = tensor.shape.clone();
        let report = |kind, sparsity: Option<f64>, nonzero: Option<u64>, note| TensorReport {
            name: name.clone(),
            kind,
            shape: shape.clone(),
            sparsity,
            nonzero,
            note,
        };
        let mut push = |payload: Payload<'static>| records.push(Record { name: Cow::Owned(name.clone()), payload });
        match classify(name, tied(tensor)) {
            Class::Embedding => {
                let [rows, cols] = tensor.shape[..] else {
                    return Err(CompressError::BadShape { name: name.clone(), shape, expected: "[vocab, n_embd]" });
                };
                let (scale, data) = match ckpt.contiguous_f32(name, tensor)? {
                    // The common case, monomorphised: a 100 MB embedding streams at memory speed.
                    Some(raw) => {
                        let values = || raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                        if !values().all(f32::is_finite) {
                            return Err(CompressError::NonFinite { name: name.clone() });
                        }
                        quantize_int8(values)
                    }
                    None => {
                        if !ckpt.f32_values(name, tensor)?.all(f32::is_finite) {
                            return Err(CompressError::NonFinite { name: name.clone() });
                        }
                        quantize_int8(|| ckpt.f32_values(name, tensor).expect("checked above"))
                    }
                };
                push(Payload::Embedding(QuantizedMatrix { scale, rows, cols, data: Cow::Owned(data) }));
                reports.push(report("EMBED", None, None, None));
            }
            Class::TiedHead => reports.push(report("SKIP", None, None, Some("tied to tok_embeddings.weight"))),
            Class::Ternary => {
                let [8, out_o, in_o] = tensor.shape[..] else {
                    return Err(CompressError::NotOctonion { name: name.clone(), shape });
                };
                let values = ckpt.to_f32(name, tensor)?;
                finite(name, &values)?;
                let ternary =
                    TernaryTensor::from_values([8, out_o, in_o], &ternarize(&values)).expect("ternarize yields {-1,0,1} of the right length");
                reports.push(report("BITMASK", Some(ternary.sparsity()), Some(u64::from(ternary.nnz)), None));
                push(Payload::Ternary(ternary));
            }
            Class::Half(kind, label) => {
                let values = ckpt.to_f32(name, tensor)?;
                finite(name, &values)?;
                push(Payload::Half { kind, array: half_array(&values, shape.clone()) });
                reports.push(report(label, None, None, None));
            }
            Class::Rope => {
                if tensor.dtype != crate::pickle::StorageType::Complex64 {
                    return Err(CompressError::BadShape { name: name.clone(), shape, expected: "a complex64 RoPE table" });
                }
                let values = ckpt.to_f32(name, tensor)?;
                finite(name, &values)?;
                let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
                let mut rope_shape = shape.clone();
                rope_shape.push(2);
                push(Payload::Rope(Array { dtype: Dtype::F32, shape: rope_shape, data: Cow::Owned(data) }));
                reports.push(report("ROPE", None, None, None));
            }
            Class::Constant => {
                check_constants(ckpt, name, tensor)?;
                reports.push(report("SKIP", None, None, Some("octonion constant, rebuilt by the engine")));
            }
            Class::Unknown => return Err(CompressError::UnknownTensor(name.clone())),
        }
        progress(tensor.byte_len());
    }

    let file = WalshFile { version: 4, header_json: Cow::Owned(header_json), records };
    Ok(Compressed { file, tensors: reports })
}

/// Where a state-dict entry goes in the file.
enum Class {
    Embedding,
    TiedHead,
    Ternary,
    Half(HalfKind, &'static str),
    Rope,
    Constant,
    Unknown,
}

/// The Python compressor's classification chain (substring tests, first match wins), less the
/// branches for model families `check_supported` already refused.
fn classify(name: &str, tied_to_embedding: bool) -> Class {
    if name.contains("tok_embeddings.weight") || (name.contains("output.weight") && !tied_to_embedding) {
        Class::Embedding
    } else if name.contains("output.weight") {
        Class::TiedHead
    } else if name.contains(".weight") && TERNARY_LAYERS.iter().any(|l| name.contains(l)) {
        Class::Ternary
    } else if name.contains(".beta") && !name.contains("head_mixer") {
        Class::Half(HalfKind::Beta, "SCALE_BETA")
    } else if name.contains("norm") {
        Class::Half(HalfKind::Norm, "NORM")
    } else if name.contains("freqs_cis") {
        Class::Rope
    } else if name.contains("head_mixer.W") {
        Class::Half(HalfKind::MixerWeight, "HEAD_MIXER")
    } else if name.contains("head_mixer.beta") {
        Class::Half(HalfKind::MixerBeta, "HEAD_MIXER_BETA")
    } else if name.ends_with("head_mixer.signs") || name.ends_with("head_mixer.widx") {
        Class::Constant
    } else {
        Class::Unknown
    }
}

/// The mixer's `signs` and `widx` buffers must be the octonion tables the engine hard-codes.
fn check_constants(ckpt: &Checkpoint, name: &str, tensor: &TensorRef) -> Result<(), CompressError> {
    let wrong = || CompressError::WrongConstants(name.to_string());
    if tensor.shape != [8, 8] {
        return Err(wrong());
    }
    let expected: Vec<f64> = if name.ends_with("signs") {
        SIGN.iter().flatten().map(|&s| f64::from(s)).collect()
    } else {
        (0..64).map(|k| ((k / 8) ^ (k % 8)) as f64).collect()
    };
    let found: Vec<f64> = match tensor.dtype {
        crate::pickle::StorageType::I64 => ckpt.int64_values(name, tensor)?.into_iter().map(|v| v as f64).collect(),
        _ => ckpt.to_f32(name, tensor)?.into_iter().map(f64::from).collect(),
    };
    if found != expected {
        return Err(wrong());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ternarize_uses_the_mean_magnitude_threshold() {
        // mean|W| = 0.75: 0.5/0.75 → 1, 0.3/0.75 = 0.4 → 0, 1.5/0.75 = 2 → clamped to 1.
        assert_eq!(ternarize(&[0.5, -0.5, 1.5, -1.5, 0.3, 0.7, 1.0, 0.0]), [1, -1, 1, -1, 0, 1, 1, 0]);
        // γ = 1 (the 1e-8 vanishes in f32): 0.5 is exactly half a step and rounds to even 0.
        assert_eq!(ternarize(&[3.0, 0.5, 0.5, 0.0]), [1, 0, 0, 0]);
        // γ = 2.5: 1.25 → 0.5 → 0 (half to even), 3.75 → 1.5 → 2 → clamped to 1.
        assert_eq!(ternarize(&[1.25, 3.75, -3.75, 1.25]), [0, 1, -1, 0]);
    }

    #[test]
    fn fast_rounding_equals_round_ties_even() {
        let mut x = -300.0f32;
        while x < 300.0 {
            for v in [x, x + 0.5, -x - 0.5, f32::from_bits(x.to_bits() + 1)] {
                if v.abs() <= 4_194_304.0 {
                    assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
                }
            }
            x += 0.123_456_7;
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, 0.499_999_97, 4_194_303.5, -4_194_302.5] {
            assert_eq!(round_half_even_small(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn int8_embedding_quantization() {
        // max 127 → scale 1: values round half to even.
        let values = [127.0, -63.5, 62.5, 0.4, -126.5];
        let (scale, q) = quantize_int8(|| values.iter().copied());
        assert_eq!(scale, 1.0);
        assert_eq!(q.iter().map(|&b| b as i8).collect::<Vec<_>>(), [127, -64, 62, 0, -126]);
        assert_eq!(quantize_int8(|| [0.0f32, 0.0].into_iter()), (1.0, vec![0, 0]));
    }
}
