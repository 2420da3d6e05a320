//! Models built with the engine's writer for the cases the reference sets do not cover: a long
//! context, a large file, a vocabulary of a chosen size. Random ternary weights from a fixed seed
//! (their text is gibberish; tests compare them with the engine run natively, not with words).

#![allow(dead_code)]

use walsh_engine::tokenizer::CharVocab;

pub use host_compressor::random_model::Shape;

/// The `.walsh` bytes of a random model of this shape (the writer `walsh demo-model` uses).
pub fn model(shape: &Shape) -> Vec<u8> {
    let file = host_compressor::random_model::random_model(shape, 0x9E37_79B9_7F4A_7C15).expect("a valid shape");
    file.to_bytes().expect("a writable model")
}

/// Newline, then printable ASCII from the space on: `n` characters (at most 96).
pub fn chars(n: usize) -> Vec<String> {
    std::iter::once('\n').chain(' '..='~').take(n).map(String::from).collect()
}

/// A character tokenizer.json with ids 0..n.
pub fn char_tokenizer(n: usize) -> Vec<u8> {
    CharVocab::new(&chars(n)).unwrap().to_tokenizer_json().into_bytes()
}

/// A character tokenizer.json of `n` characters whose last one has id `id` instead of n - 1.
pub fn char_tokenizer_with_id(n: usize, id: u32) -> Vec<u8> {
    let mut json: serde_json::Value = serde_json::from_slice(&char_tokenizer(n)).unwrap();
    let last = chars(n).pop().unwrap();
    json["model"]["vocab"][last.as_str()] = serde_json::Value::from(id);
    json.to_string().into_bytes()
}
