use thiserror::Error;

/// Why a byte sequence is not a valid `.walsh` file (or cannot be written as one).
///
/// Offsets are byte positions from the start of the file, so a user can look at the spot with a
/// hex dump.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum FormatError {
    /// The first four bytes are not `SPIN`.
    #[error("not a .walsh file: magic bytes are {found:02x?}, expected \"SPIN\"")]
    BadMagic {
        /// The file's first bytes (up to four).
        found: Vec<u8>,
    },

    /// A version this reader does not know (we read 2 and 4).
    #[error("unsupported .walsh version {version} (this reader supports versions 2 and 4)")]
    UnsupportedVersion {
        /// The version field of the file.
        version: u16,
    },

    /// The file ends inside a field.
    #[error("file truncated at offset {offset}: {what} needs {needed} more bytes, {available} left")]
    Truncated {
        /// Byte offset from the start of the file.
        offset: usize,
        /// The field being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the file.
        available: usize,
    },

    /// The JSON header is not UTF-8 or is too long.
    #[error("invalid JSON header: {reason}")]
    InvalidHeader {
        /// What is wrong with it.
        reason: String,
    },

    /// A record name is empty or not UTF-8.
    #[error("record at offset {offset}: name is {reason}")]
    InvalidName {
        /// Byte offset of the record.
        offset: usize,
        /// What is wrong with the name.
        reason: &'static str,
    },

    /// A marker byte that no version of the format defines.
    #[error("unknown record marker {marker:?} (0x{code:02x}) at offset {offset}", marker = *code as char)]
    UnknownMarker {
        /// The marker byte.
        code: u8,
        /// Byte offset from the start of the file.
        offset: usize,
    },

    /// A marker that exists, but not in this file's version (e.g. `T` in a version 4 file).
    #[error("record marker '{}' at offset {offset} is not valid in a version {version} file", *code as char)]
    MarkerNotInVersion {
        /// The marker byte.
        code: u8,
        /// The file's version.
        version: u16,
        /// Byte offset from the start of the file.
        offset: usize,
    },

    /// A record or model feature the format can describe but this engine does not run.
    #[error("unsupported: {feature} (record '{name}' at offset {offset})")]
    Unsupported {
        /// The feature, in words.
        feature: &'static str,
        /// The record's (tensor's) name.
        name: String,
        /// Byte offset of the record.
        offset: usize,
    },

    /// An array block with a dtype this record kind does not allow.
    #[error("record '{name}': dtype {found} not allowed here, expected {expected}")]
    WrongDtype {
        /// The record's (tensor's) name.
        name: String,
        /// The dtypes allowed here.
        expected: &'static str,
        /// The dtype in the file.
        found: String,
    },

    /// A shape that is malformed for this record kind.
    #[error("record '{name}': bad shape: {reason}")]
    BadShape {
        /// The record's (tensor's) name.
        name: String,
        /// What is wrong with the shape.
        reason: String,
    },

    /// A declared length that disagrees with the shape.
    #[error("record '{name}': {field} is {found} bytes, expected {expected}")]
    LengthMismatch {
        /// The record's (tensor's) name.
        name: String,
        /// The length field.
        field: &'static str,
        /// Bytes the shape implies.
        expected: usize,
        /// Bytes declared.
        found: usize,
    },

    /// The stored non-zero count disagrees with the bitmask.
    #[error("record '{name}': nnz is {declared} but the bitmask has {popcount} set bits")]
    NnzMismatch {
        /// The record's (tensor's) name.
        name: String,
        /// The stored non-zero count.
        declared: u32,
        /// Set bits in the bitmask.
        popcount: u64,
    },

    /// Padding bits after the last element are not zero (a writer bug or corruption).
    #[error("record '{name}': padding bits of the {field} are not zero")]
    NonZeroPadding {
        /// The record's (tensor's) name.
        name: String,
        /// The block whose padding is not zero.
        field: &'static str,
    },

    /// A 2-bit code outside {-1, 0, +1} in a version 2 `T` record.
    #[error("record '{name}': invalid 2-bit ternary code 0b11 at element {index}")]
    InvalidTernaryCode {
        /// The record's (tensor's) name.
        name: String,
        /// Index of the element (row-major).
        index: usize,
    },

    /// Sizes whose product does not fit in memory arithmetic.
    #[error("record '{name}': declared sizes overflow")]
    SizeOverflow {
        /// The record's (tensor's) name.
        name: String,
    },

    /// An int8 scale that is not a positive finite number.
    #[error("record '{name}': scale {value} is not a positive finite number")]
    InvalidScale {
        /// The record's (tensor's) name.
        name: String,
        /// The scale in the file.
        value: f32,
    },

    /// The same tensor name appears twice.
    #[error("duplicate tensor '{name}' at offset {offset}")]
    DuplicateTensor {
        /// The repeated name.
        name: String,
        /// Byte offset of the second record.
        offset: usize,
    },

    /// The record list is not closed by `END!`.
    #[error("missing END! tag: the file ends at offset {offset} without closing the record list")]
    MissingEndTag {
        /// Where the file ends.
        offset: usize,
    },

    /// Bytes after `END!`.
    #[error("{count} unexpected bytes after the END! tag at offset {offset}")]
    TrailingBytes {
        /// Byte offset just after `END!`.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
}
