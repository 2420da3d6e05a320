use thiserror::Error;

/// Why a byte sequence is not a valid `.walsh` file (or cannot be written as one).
///
/// Offsets are byte positions from the start of the file, so a user can look at the spot with a
/// hex dump.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FormatError {
    /// The first four bytes are not `SPIN`.
    #[error("not a .walsh file: magic bytes are {found:02x?}, expected \"SPIN\"")]
    BadMagic { found: Vec<u8> },

    /// A version this reader does not know (we read 2 and 4).
    #[error("unsupported .walsh version {version} (this reader supports versions 2 and 4)")]
    UnsupportedVersion { version: u16 },

    /// The file ends inside a field.
    #[error("file truncated at offset {offset}: {what} needs {needed} more bytes, {available} left")]
    Truncated { offset: usize, what: &'static str, needed: usize, available: usize },

    /// The JSON header is not UTF-8 or is too long.
    #[error("invalid JSON header: {reason}")]
    InvalidHeader { reason: String },

    /// A record name is empty or not UTF-8.
    #[error("record at offset {offset}: name is {reason}")]
    InvalidName { offset: usize, reason: &'static str },

    /// A marker byte that no version of the format defines.
    #[error("unknown record marker {marker:?} (0x{code:02x}) at offset {offset}", marker = *code as char)]
    UnknownMarker { code: u8, offset: usize },

    /// A marker that exists, but not in this file's version (e.g. `T` in a version 4 file).
    #[error("record marker '{}' at offset {offset} is not valid in a version {version} file", *code as char)]
    MarkerNotInVersion { code: u8, version: u16, offset: usize },

    /// A record or model feature the format can describe but this engine does not run.
    #[error("unsupported: {feature} (record '{name}' at offset {offset})")]
    Unsupported { feature: &'static str, name: String, offset: usize },

    /// An array block with a dtype this record kind does not allow.
    #[error("record '{name}': dtype {found} not allowed here, expected {expected}")]
    WrongDtype { name: String, expected: &'static str, found: String },

    /// A shape that is malformed for this record kind.
    #[error("record '{name}': bad shape: {reason}")]
    BadShape { name: String, reason: String },

    /// A declared length that disagrees with the shape.
    #[error("record '{name}': {field} is {found} bytes, expected {expected}")]
    LengthMismatch { name: String, field: &'static str, expected: usize, found: usize },

    /// The stored non-zero count disagrees with the bitmask.
    #[error("record '{name}': nnz is {declared} but the bitmask has {popcount} set bits")]
    NnzMismatch { name: String, declared: u32, popcount: u64 },

    /// Padding bits after the last element are not zero (a writer bug or corruption).
    #[error("record '{name}': padding bits of the {field} are not zero")]
    NonZeroPadding { name: String, field: &'static str },

    /// A 2-bit code outside {-1, 0, +1} in a version 2 `T` record.
    #[error("record '{name}': invalid 2-bit ternary code 0b11 at element {index}")]
    InvalidTernaryCode { name: String, index: usize },

    /// Sizes whose product does not fit in memory arithmetic.
    #[error("record '{name}': declared sizes overflow")]
    SizeOverflow { name: String },

    /// An int8 scale that is not a positive finite number.
    #[error("record '{name}': scale {value} is not a positive finite number")]
    InvalidScale { name: String, value: f32 },

    /// The same tensor name appears twice.
    #[error("duplicate tensor '{name}' at offset {offset}")]
    DuplicateTensor { name: String, offset: usize },

    /// The record list is not closed by `END!`.
    #[error("missing END! tag: the file ends at offset {offset} without closing the record list")]
    MissingEndTag { offset: usize },

    /// Bytes after `END!`.
    #[error("{count} unexpected bytes after the END! tag at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
}
