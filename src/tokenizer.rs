//! Text ↔ token ids: HF `tokenizer.json` files (GPT-2 byte-level BPE and others) through the
//! `tokenizers` crate, and the char-level vocabularies of the training project's `meta.pkl`.
//!
//! Reading `meta.pkl` itself (a Python pickle) is the native CLI's job; the engine takes the
//! vocabulary as a list of characters so that it stays free of file formats it does not need on
//! wasm.

use std::collections::HashMap;

use thiserror::Error;

/// Why a tokenizer cannot be built or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenizerError {
    /// The tokenizer.json could not be read (the library's message).
    #[error("cannot read tokenizer.json: {0}")]
    InvalidJson(String),
    /// A char vocabulary entry that is not exactly one character.
    #[error("char vocabulary entry {index} is {entry:?}; each entry must be exactly one character")]
    InvalidCharEntry {
        /// Its id.
        index: usize,
        /// The entry.
        entry: String,
    },
    /// A character listed twice.
    #[error("char vocabulary has '{0}' twice")]
    DuplicateChar(char),
    /// No characters.
    #[error("char vocabulary is empty")]
    EmptyVocabulary,
    /// The tokenizer library failed (its message).
    #[error("tokenizer failed: {0}")]
    Backend(String),
    /// A token id with no entry.
    #[error("token id {0} is not in the vocabulary")]
    UnknownId(u32),
}

/// A character-level vocabulary: id i is the character `itos[i]`.
#[derive(Debug, Clone)]
pub struct CharVocab {
    itos: Vec<char>,
    stoi: HashMap<char, u32>,
}

impl CharVocab {
    /// From the id-ordered characters (`itos`); errors on an empty list, an entry that is not
    /// one character, or a repeated character.
    pub fn new<S: AsRef<str>>(itos: &[S]) -> Result<CharVocab, TokenizerError> {
        if itos.is_empty() {
            return Err(TokenizerError::EmptyVocabulary);
        }
        let mut chars = Vec::with_capacity(itos.len());
        let mut stoi = HashMap::with_capacity(itos.len());
        for (index, entry) in itos.iter().enumerate() {
            let entry = entry.as_ref();
            let mut it = entry.chars();
            let (Some(c), None) = (it.next(), it.next()) else {
                return Err(TokenizerError::InvalidCharEntry { index, entry: entry.to_string() });
            };
            if stoi.insert(c, index as u32).is_some() {
                return Err(TokenizerError::DuplicateChar(c));
            }
            chars.push(c);
        }
        Ok(CharVocab { itos: chars, stoi })
    }

    /// The characters in id order.
    pub fn chars(&self) -> &[char] {
        &self.itos
    }

    /// An HF `tokenizer.json` that encodes and decodes exactly like this vocabulary: a BPE model
    /// with one token per character and no merges (so every character is its own token), no
    /// unknown token (so unknown characters are dropped, as the reference does) and a `Fuse`
    /// decoder (so tokens are joined without separators). Lets every model ship one tokenizer
    /// format, which the canister takes.
    pub fn to_tokenizer_json(&self) -> String {
        let vocab: serde_json::Map<String, serde_json::Value> =
            self.itos.iter().enumerate().map(|(i, c)| (c.to_string(), serde_json::Value::from(i))).collect();
        serde_json::json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": null,
            "post_processor": null,
            "decoder": {"type": "Fuse"},
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": []
            }
        })
        .to_string()
    }
}

/// A tokenizer of either kind.
#[derive(Clone)]
pub enum Tokenizer {
    /// Anything `tokenizers` reads from a `tokenizer.json` (GPT-2 BPE for the released models).
    Hf(Box<tokenizers::Tokenizer>),
    /// Character-level, as the TinyShakespeare models use.
    Char(CharVocab),
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tokenizer::Hf(t) => write!(f, "Tokenizer::Hf(vocab {})", t.get_vocab_size(true)),
            Tokenizer::Char(v) => write!(f, "Tokenizer::Char(vocab {})", v.itos.len()),
        }
    }
}

impl Tokenizer {
    /// Reads a HF `tokenizer.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Tokenizer, TokenizerError> {
        let t = tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| TokenizerError::InvalidJson(e.to_string()))?;
        Ok(Tokenizer::Hf(Box::new(t)))
    }

    /// A character-level tokenizer over `vocab`.
    pub fn char_level(vocab: CharVocab) -> Tokenizer {
        Tokenizer::Char(vocab)
    }

    /// Number of ids the tokenizer can produce (including special tokens).
    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Hf(t) => t.get_vocab_size(true),
            Tokenizer::Char(v) => v.itos.len(),
        }
    }

    /// "Char" or "HF tokenizer.json", for reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Tokenizer::Hf(_) => "tokenizer.json",
            Tokenizer::Char(_) => "char",
        }
    }

    /// Encodes text. Special tokens written out (e.g. `<|endoftext|>`) map to their ids, as the
    /// reference's `allowed_special="all"` does. Char vocabularies drop unknown characters, as
    /// the reference does (decode the ids to see what remains).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        match self {
            Tokenizer::Hf(t) => {
                let enc = t.encode(text, false).map_err(|e| TokenizerError::Backend(e.to_string()))?;
                Ok(enc.get_ids().to_vec())
            }
            Tokenizer::Char(v) => Ok(text.chars().filter_map(|c| v.stoi.get(&c).copied()).collect()),
        }
    }

    /// Decodes ids to text. Bytes that do not form complete UTF-8 become U+FFFD; use
    /// [`TextStream`] when decoding token by token.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        match self {
            Tokenizer::Hf(t) => t.decode(ids, false).map_err(|e| TokenizerError::Backend(e.to_string())),
            Tokenizer::Char(v) => ids.iter().map(|&id| v.itos.get(id as usize).copied().ok_or(TokenizerError::UnknownId(id))).collect(),
        }
    }

    /// The id of an end-of-text token, if the vocabulary has one.
    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            Tokenizer::Hf(t) => ["<|endoftext|>", "</s>", "<eos>"].iter().find_map(|s| t.token_to_id(s)),
            Tokenizer::Char(_) => None,
        }
    }
}

/// Incremental decoding that never splits a character: a token that ends inside a multi-byte
/// UTF-8 sequence produces no text until the tokens completing it arrive.
///
/// Works for any tokenizer by decoding a short window of recent ids and emitting only the part
/// that is new and does not end in U+FFFD. It owns no reference to the tokenizer, so it can live
/// in a long-running session.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Ids before this index were emitted as context for the window.
    prefix_start: usize,
    /// Ids from this index on have not been emitted yet.
    read_start: usize,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> TextStream {
        TextStream::default()
    }

    /// Adds one id and returns the text that became complete (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        let prefix = tokenizer.decode(&self.ids[self.prefix_start..self.read_start])?;
        let window = tokenizer.decode(&self.ids[self.prefix_start..])?;
        if window.ends_with('\u{FFFD}') || !window.starts_with(&prefix) {
            return Ok(String::new());
        }
        let Some(new_text) = window.get(prefix.len()..) else {
            return Ok(String::new());
        };
        let new_text = new_text.to_string();
        if new_text.is_empty() {
            return Ok(new_text);
        }
        // Keep only the ids the next window needs as context.
        self.prefix_start = self.read_start;
        self.read_start = self.ids.len();
        self.ids.drain(..self.prefix_start);
        self.read_start -= self.prefix_start;
        self.prefix_start = 0;
        Ok(new_text)
    }

    /// Text of ids still held back (an incomplete character at the end of the stream), with
    /// U+FFFD for the incomplete bytes.
    pub fn flush(&mut self, tokenizer: &Tokenizer) -> Result<String, TokenizerError> {
        let prefix = tokenizer.decode(&self.ids[self.prefix_start..self.read_start])?;
        let window = tokenizer.decode(&self.ids[self.prefix_start..])?;
        self.ids.clear();
        self.prefix_start = 0;
        self.read_start = 0;
        Ok(window.get(prefix.len()..).unwrap_or_default().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_vocab_encodes_drops_unknown_and_decodes() {
        let t = Tokenizer::char_level(CharVocab::new(&["\n", " ", "a", "b", "é"]).unwrap());
        assert_eq!(t.encode("ab é\nz").unwrap(), vec![2, 3, 1, 4, 0]);
        assert_eq!(t.decode(&[4, 1, 2]).unwrap(), "é a");
        assert_eq!(t.decode(&[9]), Err(TokenizerError::UnknownId(9)));
    }

    #[test]
    fn char_vocab_as_tokenizer_json_behaves_identically() {
        let vocab = CharVocab::new(&["\n", " ", "!", "a", "b", "é", "中"]).unwrap();
        let json = vocab.to_tokenizer_json();
        let hf = Tokenizer::from_json(json.as_bytes()).unwrap();
        let native = Tokenizer::char_level(vocab);
        for text in ["ab  a\n!", "éa中b", "unknown zq: ab", "", "\n\n  "] {
            let ids = native.encode(text).unwrap();
            assert_eq!(hf.encode(text).unwrap(), ids, "{text:?}");
            assert_eq!(hf.decode(&ids).unwrap(), native.decode(&ids).unwrap(), "{text:?}");
        }
        assert_eq!(hf.vocab_size(), 7);
    }

    #[test]
    fn char_vocab_rejects_bad_entries() {
        assert!(matches!(CharVocab::new(&["ab"]), Err(TokenizerError::InvalidCharEntry { index: 0, .. })));
        assert!(matches!(CharVocab::new(&[""]), Err(TokenizerError::InvalidCharEntry { .. })));
        assert_eq!(CharVocab::new(&["a", "a"]).unwrap_err(), TokenizerError::DuplicateChar('a'));
        assert_eq!(CharVocab::new::<&str>(&[]).unwrap_err(), TokenizerError::EmptyVocabulary);
    }
}
