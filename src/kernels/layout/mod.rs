//! The load-time layouts the kernels run on: built once by the model's assembly, read by every
//! token. Their fields are private and their constructors establish what the kernels rely on
//! (offsets inside their table, lengths that match the dimensions), so that no safe code can make
//! a kernel read or write outside its buffers.

mod mixer;
mod quad;
mod rope;
mod ternary;

#[cfg(test)]
pub(crate) use mixer::MIXER_WEIGHT_RANGE;
pub(crate) use mixer::{HeadMixer, MIXER_BLOCK, MIXER_INPUT_RANGE, PackedMixer};
pub(crate) use quad::{Int8Data, QuantizedMatrix};
pub(crate) use rope::RopeTable;
pub(crate) use ternary::TernaryLinear;

/// Input columns per lookup.
pub(crate) const GROUP: usize = 4;
/// Sign patterns per group: 3^GROUP.
pub(crate) const PATTERNS: usize = 81;
/// One table entry: 8 parts × i32.
pub(crate) const ENTRY_BYTES: usize = 32;
/// Bytes of one group's table.
pub(crate) const GROUP_BYTES: usize = PATTERNS * ENTRY_BYTES;
/// The row loops read lookups in blocks of this many; streams are padded with the zero entry.
pub(crate) const LOOKUP_BLOCK: usize = 4;
/// Largest lookup table the engine supports (bytes). Sets the widest layer: 404 groups, i.e.
/// 1616 input columns per part (12928 inputs).
pub(crate) const MAX_TABLE_BYTES: usize = 1 << 20;
/// Most column groups a layer may have (its table fits in [`MAX_TABLE_BYTES`]).
pub(crate) const MAX_GROUPS: usize = MAX_TABLE_BYTES / GROUP_BYTES;

// The SIMD kernels depend on these: 3^GROUP patterns, an entry of two 16-byte vectors, a table
// made of whole vectors, and straight-line lookup blocks of 4.
const _: () = assert!(PATTERNS == 3 * 3 * 3 * 3 && GROUP == 4);
const _: () = assert!(ENTRY_BYTES == size_of::<[i32; 8]>() && ENTRY_BYTES.is_multiple_of(16));
const _: () = assert!(MAX_TABLE_BYTES.is_multiple_of(16) && GROUP_BYTES.is_multiple_of(16) && MAX_GROUPS > 0);
const _: () = assert!(LOOKUP_BLOCK == 4);
// Offsets are u32: the largest must fit.
const _: () = assert!(MAX_TABLE_BYTES <= u32::MAX as usize);
