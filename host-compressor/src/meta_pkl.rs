//! Reads the char vocabulary a training run stores in `meta.pkl` (`{"vocab_size", "itos", "stoi"}`,
//! pickled by Python). Only `itos` (id → character) is needed; `stoi` is checked against it when
//! present so that a damaged file is reported instead of silently mis-tokenizing.
//!
//! The pickle is read by [`crate::pickle`], with the limits it enforces on hostile input (depth,
//! shared values, budgets), rather than by a general pickle library without them.

use anyhow::{Context, Result, bail};
use walsh_engine::tokenizer::CharVocab;

use crate::pickle::{self, Value};

fn as_index(v: &Value) -> Option<usize> {
    match v {
        Value::Int(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// Parses `meta.pkl` bytes into a char vocabulary.
pub fn read_char_vocab(bytes: &[u8]) -> Result<CharVocab> {
    let value = pickle::load(bytes).context("meta.pkl is not a readable Python pickle")?;
    if !matches!(value, Value::Dict(_)) {
        bail!("meta.pkl does not hold a dict");
    }
    let Some(Value::Dict(itos)) = value.get("itos") else {
        if value.get("tokenizer").is_some() || value.get("vocab_size").is_some() {
            bail!("meta.pkl has no char vocabulary (\"itos\"); a BPE model needs a tokenizer.json instead");
        }
        bail!("meta.pkl has no \"itos\" entry");
    };
    let mut entries = vec![None; itos.len()];
    for (k, v) in itos.iter() {
        let index = as_index(k)
            .filter(|&i| i < entries.len())
            .with_context(|| format!("meta.pkl itos has a bad key {}: ids must be 0..{}", k.describe(), itos.len()))?;
        let Value::Str(s) = v else {
            bail!("meta.pkl itos[{index}] is not a string");
        };
        entries[index] = Some(s.to_string());
    }
    let itos: Vec<String> = entries.into_iter().collect::<Option<_>>().context("meta.pkl itos ids are not contiguous")?;
    if let Some(Value::Dict(stoi)) = value.get("stoi") {
        for (k, v) in stoi.iter() {
            let (Value::Str(s), Value::Int(id)) = (k, v) else {
                bail!("meta.pkl stoi has a non-string key or non-integer id");
            };
            if usize::try_from(*id).ok().and_then(|i| itos.get(i)).map(String::as_str) != Some(&**s) {
                bail!("meta.pkl stoi[{}] = {id} disagrees with itos", k.describe());
            }
        }
    }
    if let Some(Value::Int(n)) = value.get("vocab_size")
        && *n != itos.len() as i64
    {
        bail!("meta.pkl vocab_size is {n} but itos has {} entries", itos.len());
    }
    Ok(CharVocab::new(&itos)?)
}
