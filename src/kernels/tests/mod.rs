//! Per-kernel tests over one table of shapes. For each kernel: its SIMD version against its twin,
//! bit for bit (`*_simd_equals_twin`, compiled on wasm32 with simd128 only — `scripts/test.sh`
//! runs them in wasmtime), and its twin against the f32 reference within the kernel's stated
//! bound (`*_twin_matches_reference`, everywhere: natively and on wasm32 with simd128 on and off).

mod attention;
mod layout;
mod logits;
mod mixer;
mod norm;
mod sampling;
mod swiglu;
mod ternary;

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// The edge widths every kernel is tried on: empty, one, around a SIMD vector (4) and two (8),
/// around 16, and a whole head.
pub(super) const EDGE_WIDTHS: [usize; 11] = [0, 1, 3, 4, 5, 7, 8, 15, 16, 17, 64];

/// The widths of the test models: char-tiny (n_embd 64, hidden 176, head_dim 8), gpt2-small (128,
/// 344, 16) and gpt2-bench (512, 1368, 64, vocab 50257).
pub(super) const MODEL_WIDTHS: [usize; 6] = [128, 176, 344, 512, 1368, 50257];

/// [`EDGE_WIDTHS`] then [`MODEL_WIDTHS`].
pub(super) fn widths() -> impl Iterator<Item = usize> {
    EDGE_WIDTHS.into_iter().chain(MODEL_WIDTHS)
}

pub(super) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(super) fn random_ternary(rng: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| (rng.next_u32() % 3) as i8 - 1).collect()
}

/// Uniform in `[-scale, scale]`.
pub(super) fn random_f32(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| ((rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0) * scale).collect()
}

pub(super) fn random_i8(rng: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| ((rng.next_u32() % 255) as i32 - 127) as i8).collect()
}

/// Equal bit patterns (so NaN equals NaN and 0 differs from −0).
pub(super) fn same_bits(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
}

/// A `rows × cols` int8 matrix from row-major values, in row quads (as the model's assembly
/// builds it).
pub(super) fn quantized(rows: usize, cols: usize, scale: f32, values: &[i8]) -> crate::kernels::layout::QuantizedMatrix {
    use crate::kernels::layout::{Int8Data, QuantizedMatrix};
    let mut bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    crate::kernels::to_row_quads(&mut bytes, rows, cols);
    QuantizedMatrix::from_row_quads(rows, cols, scale, Int8Data::from_bytes(bytes)).unwrap()
}
