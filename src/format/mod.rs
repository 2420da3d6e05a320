//! The `.walsh` container: records of ternary weights, int8 embeddings and fp16/fp32 arrays.
//!
//! The byte layout is specified in `docs/FORMAT.md`; this module is its executable form.
//! [`WalshFile::parse`] borrows from the input slice (no copies for version 4) and rejects anything
//! the specification does not allow with a [`FormatError`]; [`WalshFile::to_bytes`] writes
//! version 4 exactly as the Python compressor does, so parse → write reproduces a v4 file byte for
//! byte.
//!
//! This layer checks bytes, lengths and per-record consistency. Whether the records add up to a
//! runnable model (names, shapes against the config) is checked by [`crate::model::Model`].

mod error;
mod parse;
mod records;
mod write;

pub use error::FormatError;
pub use records::{
    Array, Dtype, END_TAG, HalfKind, MAGIC, MAX_HEADER_LEN, MAX_NDIM, Payload, QuantizedMatrix, Record, TernaryTensor, WRITE_VERSION, WalshFile,
};

impl<'a> WalshFile<'a> {
    /// Parses and validates a whole file held in memory. Never panics.
    pub fn parse(bytes: &'a [u8]) -> Result<WalshFile<'a>, FormatError> {
        parse::parse(bytes)
    }

    /// Serialises as version 4 (the only version we write).
    pub fn to_bytes(&self) -> Result<Vec<u8>, FormatError> {
        write::check_writable(&self.header_json, &self.records)?;
        let mut out = Vec::with_capacity(self.payload_bytes() + self.header_json.len() + 64 * self.records.len() + 16);
        write::write_v4(&self.header_json, &self.records, &mut out).expect("writing to a Vec cannot fail");
        Ok(out)
    }

    /// Streams version 4 into `out` (e.g. a file) without building the whole file in memory.
    /// Size problems are reported before anything is written.
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        write::check_writable(&self.header_json, &self.records).map_err(std::io::Error::other)?;
        write::write_v4(&self.header_json, &self.records, out)
    }

    /// The record with this exact name.
    pub fn record(&self, name: &str) -> Option<&Record<'a>> {
        self.records.iter().find(|r| r.name == name)
    }

    /// Total bytes of payload data (excluding framing), for reports.
    pub fn payload_bytes(&self) -> usize {
        self.records
            .iter()
            .map(|r| match &r.payload {
                Payload::Ternary(t) => t.bitmask.len() + t.signs.len(),
                Payload::Embedding(e) => e.data.len(),
                Payload::Half { array, .. } | Payload::Rope(array) => array.data.len(),
            })
            .sum()
    }
}
