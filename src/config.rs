//! The model configuration stored as the JSON header of a `.walsh` file.
//!
//! The header is the training run's `model_args` dict, whose keys changed over the project's
//! history (see docs/FORMAT.md). We read what the octonion model needs, accept the legacy
//! `octonion_attention` spelling of `head_mixing`, and refuse features we do not run rather than
//! ignoring them.

use serde_json::{Map, Value};
use thiserror::Error;

// Bounds that keep a hostile header from asking for absurd allocations. Real models are far
// below them (the largest config in the project's history is 24 layers × 1280 wide).
/// Most layers (`n_layer`).
pub const MAX_LAYERS: usize = 512;
/// Widest model (`n_embd`).
pub const MAX_EMBD: usize = 32_768;
/// Largest vocabulary (`vocab_size`).
pub const MAX_VOCAB: usize = 1 << 22;
/// Longest context (`block_size`).
pub const MAX_BLOCK_SIZE: usize = 1 << 17;

/// What the engine reads from the header: the model's dimensions and features.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// Transformer blocks.
    pub n_layer: usize,
    /// Attention heads per block (a multiple of 8 with the head mixer).
    pub n_head: usize,
    /// Model width: values per position (a multiple of 8: 8 octonion parts).
    pub n_embd: usize,
    /// Context length: the KV cache never holds more positions than this.
    pub block_size: usize,
    /// Tokens in the vocabulary (rows of the embedding).
    pub vocab_size: usize,
    /// Whether each attention layer has an octonion head mixer.
    pub head_mixing: bool,
}

/// Why a header is not a config this engine runs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// The header is not JSON (the parser's message).
    #[error("header is not valid JSON: {0}")]
    Json(String),
    /// The header is JSON but not an object.
    #[error("header JSON is not an object")]
    NotAnObject,
    /// A key the model needs is absent (the key).
    #[error("header is missing the required key \"{0}\"")]
    MissingKey(&'static str),
    /// A key's value is of the wrong type or out of range.
    #[error("header key \"{key}\" has an invalid value: {reason}")]
    InvalidValue {
        /// The header key.
        key: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A feature this engine does not run (named).
    #[error("unsupported model feature: {0}")]
    Unsupported(String),
}

fn positive(obj: &Map<String, Value>, key: &'static str, max: usize) -> Result<usize, ConfigError> {
    let value = obj.get(key).ok_or(ConfigError::MissingKey(key))?;
    let n = value.as_u64().ok_or_else(|| ConfigError::InvalidValue { key, reason: format!("{value} is not a non-negative integer") })?;
    if n == 0 || n > max as u64 {
        return Err(ConfigError::InvalidValue { key, reason: format!("{n} is outside 1..={max}") });
    }
    Ok(n as usize)
}

fn flag(obj: &Map<String, Value>, key: &'static str) -> Result<bool, ConfigError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(ConfigError::InvalidValue { key, reason: format!("{other} is not a boolean") }),
    }
}

impl ModelConfig {
    /// Parses and validates a header.
    pub fn from_json(json: &str) -> Result<ModelConfig, ConfigError> {
        let value: Value = serde_json::from_str(json).map_err(|e| ConfigError::Json(e.to_string()))?;
        let obj = value.as_object().ok_or(ConfigError::NotAnObject)?;

        match obj.get("algebra") {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s == "octonion" => {}
            Some(Value::String(s)) if s == "hadamard" => {
                return Err(ConfigError::Unsupported("the Hadamard algebra (only octonion models run here)".into()));
            }
            Some(other) => {
                return Err(ConfigError::InvalidValue { key: "algebra", reason: format!("unknown algebra {other}") });
            }
        }
        for (key, what) in [
            ("hash_embeddings", "hash embeddings"),
            ("use_moe", "mixture-of-experts feed-forward layers"),
            ("use_channel_mod", "channel modulation"),
            ("use_ssm", "state-space layers"),
        ] {
            if flag(obj, key)? {
                return Err(ConfigError::Unsupported(format!("{what} (\"{key}\": true)")));
            }
        }

        let config = ModelConfig {
            n_layer: positive(obj, "n_layer", MAX_LAYERS)?,
            n_head: positive(obj, "n_head", MAX_EMBD)?,
            n_embd: positive(obj, "n_embd", MAX_EMBD)?,
            block_size: positive(obj, "block_size", MAX_BLOCK_SIZE)?,
            vocab_size: positive(obj, "vocab_size", MAX_VOCAB)?,
            // Models from before December 2025 call the mixer "octonion_attention".
            head_mixing: flag(obj, "head_mixing")? || flag(obj, "octonion_attention")?,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: String| Err(ConfigError::InvalidValue { key, reason });
        if !self.n_embd.is_multiple_of(8) {
            return invalid("n_embd", format!("{} is not divisible by 8 octonion parts", self.n_embd));
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return invalid("n_head", format!("{} does not divide n_embd {}", self.n_head, self.n_embd));
        }
        if !self.head_dim().is_multiple_of(2) {
            return invalid("n_head", format!("head_dim {} is odd; RoPE rotates pairs", self.head_dim()));
        }
        if self.head_mixing && !self.n_head.is_multiple_of(8) {
            return invalid("n_head", format!("{} is not a multiple of 8, which the head mixer needs", self.n_head));
        }
        Ok(())
    }

    /// Width of one attention head: `n_embd / n_head` (even).
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head
    }

    /// Width of the SwiGLU hidden layer: 8/3 · n_embd rounded up to a multiple of 8, as the
    /// training code computes it.
    pub fn hidden_dim(&self) -> usize {
        (8 * self.n_embd / 3).div_ceil(8) * 8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = r#"{"n_layer": 8, "n_head": 8, "n_embd": 512, "block_size": 256, "bias": false, "vocab_size": 50257, "dropout": 0.0, "head_mixing": true, "algebra": "octonion", "hash_embeddings": false, "use_moe": false, "moe_threshold": 0.1, "moe_min_experts": 1, "moe_max_experts": 4, "use_channel_mod": false}"#;

    #[test]
    fn reads_current_header_and_hidden_width() {
        let c = ModelConfig::from_json(HEAD).unwrap();
        assert_eq!((c.n_layer, c.n_head, c.n_embd, c.block_size, c.vocab_size), (8, 8, 512, 256, 50257));
        assert!(c.head_mixing);
        assert_eq!(c.head_dim(), 64);
        // Documented values from the reference: 512 → 1368, 256 → 688.
        assert_eq!(c.hidden_dim(), 1368);
        assert_eq!(ModelConfig { n_embd: 256, ..c }.hidden_dim(), 688);
    }

    #[test]
    fn legacy_octonion_attention_means_head_mixing() {
        let c = ModelConfig::from_json(r#"{"n_layer": 1, "n_head": 8, "n_embd": 64, "block_size": 8, "vocab_size": 65, "octonion_attention": true}"#)
            .unwrap();
        assert!(c.head_mixing);
    }

    #[test]
    fn refuses_unsupported_features() {
        for (key, value) in [("algebra", "\"hadamard\""), ("hash_embeddings", "true"), ("use_moe", "true")] {
            let json = HEAD.replacen(&format!("\"{key}\": "), &format!("\"{key}\": {value}, \"_was\": "), 1);
            assert!(matches!(ModelConfig::from_json(&json), Err(ConfigError::Unsupported(_))), "{key}");
        }
    }

    #[test]
    fn refuses_bad_values() {
        assert_eq!(ModelConfig::from_json("[1]"), Err(ConfigError::NotAnObject));
        assert!(matches!(ModelConfig::from_json("{"), Err(ConfigError::Json(_))));
        let missing = HEAD.replace("\"vocab_size\": 50257, ", "");
        assert_eq!(ModelConfig::from_json(&missing), Err(ConfigError::MissingKey("vocab_size")));
        for bad in ["\"n_embd\": 500", "\"n_embd\": -8", "\"n_embd\": 0", "\"n_embd\": 1e9", "\"n_embd\": \"512\""] {
            let json = HEAD.replace("\"n_embd\": 512", bad);
            assert!(matches!(ModelConfig::from_json(&json), Err(ConfigError::InvalidValue { .. })), "{bad}");
        }
        let json = HEAD.replace("\"n_head\": 8", "\"n_head\": 4");
        assert!(matches!(ModelConfig::from_json(&json), Err(ConfigError::InvalidValue { key: "n_head", .. })));
    }
}
