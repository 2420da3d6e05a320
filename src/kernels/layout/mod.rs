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
pub(crate) use ternary::{GROUP, GROUP_BYTES, MAX_TABLE_BYTES, TernaryLinear};
// What only the SIMD kernel's static scratch and lookup loop need.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) use ternary::{LOOKUP_BLOCK, MAX_GROUPS};
