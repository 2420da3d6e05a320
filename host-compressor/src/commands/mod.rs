pub mod compress;
pub mod demo;
pub mod generate;
pub mod generate_remote;
pub mod inspect;
pub mod remote;
pub mod tokenizer;
pub mod upload;

use std::path::Path;

use anyhow::{Context, Result};
use walsh_engine::model::Model;
use walsh_engine::tokenizer::Tokenizer;

pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

pub fn load_model(path: &Path) -> Result<Model> {
    let bytes = read_file(path)?;
    Model::load(&bytes).with_context(|| format!("{} is not a usable .walsh model", path.display()))
}

/// Loads a `tokenizer.json`, or a char vocabulary from a training run's `meta.pkl`.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    let bytes = read_file(path)?;
    // Pickles start with the PROTO opcode 0x80; JSON with '{' or whitespace.
    if bytes.first() == Some(&0x80) || path.extension().is_some_and(|e| e == "pkl") {
        let vocab = host_compressor::meta_pkl::read_char_vocab(&bytes).with_context(|| format!("reading {}", path.display()))?;
        Ok(Tokenizer::char_level(vocab))
    } else {
        Tokenizer::from_json(&bytes).with_context(|| format!("reading {}", path.display()))
    }
}
