//! Reads the char vocabulary a training run stores in `meta.pkl` (`{"vocab_size", "itos", "stoi"}`,
//! pickled by Python). Only `itos` (id → character) is needed; `stoi` is checked against it when
//! present so that a damaged file is reported instead of silently mis-tokenizing.

use anyhow::{Context, Result, bail};
use serde_pickle::{DeOptions, HashableValue, Value};
use walsh_engine::tokenizer::CharVocab;

fn key(name: &str) -> HashableValue {
    HashableValue::String(name.to_string())
}

fn as_index(v: &HashableValue) -> Option<usize> {
    match v {
        HashableValue::I64(i) => usize::try_from(*i).ok(),
        _ => None,
    }
}

/// Parses `meta.pkl` bytes into a char vocabulary.
pub fn read_char_vocab(bytes: &[u8]) -> Result<CharVocab> {
    let value = serde_pickle::value_from_slice(bytes, DeOptions::new()).context("meta.pkl is not a readable Python pickle")?;
    let Value::Dict(dict) = value else {
        bail!("meta.pkl does not hold a dict");
    };
    let Some(Value::Dict(itos)) = dict.get(&key("itos")) else {
        if dict.contains_key(&key("tokenizer")) || dict.contains_key(&key("vocab_size")) {
            bail!("meta.pkl has no char vocabulary (\"itos\"); a BPE model needs a tokenizer.json instead");
        }
        bail!("meta.pkl has no \"itos\" entry");
    };
    let mut entries = vec![None; itos.len()];
    for (k, v) in itos {
        let index = as_index(k).filter(|&i| i < entries.len()).with_context(|| format!("meta.pkl itos has a bad key {k:?}: ids must be 0..{}", itos.len()))?;
        let Value::String(s) = v else {
            bail!("meta.pkl itos[{index}] is not a string");
        };
        entries[index] = Some(s.clone());
    }
    let itos: Vec<String> = entries.into_iter().collect::<Option<_>>().context("meta.pkl itos ids are not contiguous")?;
    if let Some(Value::Dict(stoi)) = dict.get(&key("stoi")) {
        for (k, v) in stoi {
            let (HashableValue::String(s), Value::I64(id)) = (k, v) else {
                bail!("meta.pkl stoi has a non-string key or non-integer id");
            };
            if usize::try_from(*id).ok().and_then(|i| itos.get(i)) != Some(s) {
                bail!("meta.pkl stoi[{s:?}] = {id} disagrees with itos");
            }
        }
    }
    if let Some(Value::I64(n)) = dict.get(&key("vocab_size")) {
        if *n != itos.len() as i64 {
            bail!("meta.pkl vocab_size is {n} but itos has {} entries", itos.len());
        }
    }
    Ok(CharVocab::new(&itos)?)
}
