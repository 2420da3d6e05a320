//! The inference kernels and the layouts they run on.
//!
//! Every fast kernel lives twice, in files of the same name: a plain-Rust **twin** in
//! [`portable`] (always compiled: the native path and the scalar wasm path) and a wasm **SIMD128**
//! version in `wasm32/simd128/` (compiled when the target has `simd128`, as the canister does).
//! Both do the same integer arithmetic and the same f32 operations in the same order, so their
//! results are bit-identical (tested on wasm32); the twins are tested against the f32 oracle in
//! `reference.rs` within stated bounds. This file is the one place that picks, per operation,
//! which of the two a build runs. Dependencies run one way: `layout`, `quant`, `math` ←
//! `portable` ← `wasm32::simd128` ← this file ← the model. Costs and choices: `docs/KERNELS.md`.

pub(crate) mod layout;
pub(crate) mod math;
pub(crate) mod portable;
pub(crate) mod quant;
#[cfg(test)]
pub(crate) mod reference;
#[cfg(test)]
mod tests;
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod wasm32;

use layout::{PackedMixer, QuantizedMatrix, RopeTable, TernaryLinear};
pub(crate) use portable::sampling::SAMPLING_CUTOFF;

/// `$simd` in builds with wasm SIMD128, `$twin` in all others.
macro_rules! fastest {
    ($simd:expr, $twin:expr) => {{
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        let chosen = $simd;
        #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
        let chosen = $twin;
        chosen
    }};
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
use wasm32::simd128 as simd;

/// `y = layer(x)`: `x` is `[8][in_o]` (at least `8 · in_o` values), `y` is `[8][out_o]` (at least
/// `8 · out_o`). All zeros in give zeros out; a non-finite input gives NaN everywhere.
///
/// # Panics
/// If `x` or `y` is shorter than that.
pub(crate) fn ternary_linear(layer: &TernaryLinear, x: &[f32], y: &mut [f32]) {
    ternary_linears(&mut [(layer, y)], x)
}

/// Several layers of one input width on the same `x` (one quantization and table for all): q, k,
/// v; gate, up. Shapes as [`ternary_linear`].
///
/// # Panics
/// If the layers' input widths differ, or a buffer is too short.
pub(crate) fn ternary_linears(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32]) {
    fastest!(
        simd::ternary::ternary_linears(layers, x),
        TABLE.with_borrow_mut(|table| {
            let needed = layers.first().map_or(0, |(l, _)| portable::ternary::table_len_i32(l));
            if table.len() < needed {
                table.resize(needed, 0);
            }
            portable::ternary::ternary_linears_twin(layers, x, table)
        })
    )
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
thread_local! {
    /// The twin's lookup table, grown to the widest layer seen (the SIMD kernel's is a static).
    static TABLE: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// `logits[r] = scale · Σ_c head[r][c] · h[c]` for `r < min(head.rows, logits.len())`; `h` has
/// at least `head.cols` values (the hidden state after the final norm).
///
/// # Panics
/// If `h` is shorter than `head.cols`.
pub(crate) fn int8_logits(head: &QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    fastest!(simd::logits::int8_logits(head, h, logits), portable::logits::int8_logits_twin(head, h, logits))
}

/// Rearranges a row-major `rows × cols` int8 matrix (given as bytes) into row-quad order
/// ([`QuantizedMatrix`]) in place, one block of 4 rows at a time through a buffer of 4 rows.
///
/// # Panics
/// If `cols` is odd or `bytes` holds fewer than `rows · cols` values.
pub(crate) fn to_row_quads(bytes: &mut [u8], rows: usize, cols: usize) {
    assert!(cols.is_multiple_of(2) && rows.checked_mul(cols).is_some_and(|n| bytes.len() >= n));
    let block = 4 * cols;
    if block == 0 {
        return;
    }
    let mut rows4 = vec![0u8; block];
    for quad in bytes[..rows / 4 * block].chunks_exact_mut(block) {
        rows4.copy_from_slice(quad);
        fastest!(simd::logits::interleave_rows4(&rows4, quad), portable::logits::interleave_rows4_twin(&rows4, quad));
    }
}

/// The head mixer on all heads of one position: `z` and `out` are `[n_head][head_dim]` with
/// `n_head` a multiple of 8 (whole groups only; a partial group is left untouched).
pub(crate) fn head_mix(mixer: &PackedMixer, z: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if mixer.head_dim() == 64 {
        return simd::mixer::head_mix_64(mixer, z, out);
    }
    portable::mixer::head_mix_twin(mixer, z, out)
}

/// Causal attention of one position: `q` and `out` are `[n_head][head_dim]` (`out` no longer
/// than `q`), `keys` and `values` `[positions][n_head · head_dim]` with at least `last + 1`
/// positions, `scores` scratch of at least `last + 1`. Attends to positions `0..=last`.
///
/// # Panics
/// If a buffer is shorter than that.
pub(crate) fn attend(q: &[f32], keys: &[f32], values: &[f32], last: usize, head_dim: usize, scores: &mut [f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if head_dim.is_multiple_of(4) {
        return simd::attention::attend(q, keys, values, last, head_dim, scores, out);
    }
    portable::attention::attend_twin(q, keys, values, last, head_dim, scores, out)
}

/// RMSNorm: `out = x · rsqrt(mean(x²) + ε) · gain` (over the shortest of the three).
pub(crate) fn rms_norm(x: &[f32], gain: &[f32], out: &mut [f32]) {
    fastest!(simd::norm::rms_norm(x, gain, out), portable::norm::rms_norm_twin(x, gain, out))
}

/// RoPE on all heads of one position (`x` is `[n_head][head_dim]`) at `position`.
///
/// # Panics
/// If `position` is past the table or `head_dim` is larger than the table's heads.
pub(crate) fn rope(x: &mut [f32], head_dim: usize, position: usize, table: &RopeTable) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if head_dim.is_multiple_of(8) {
        return simd::norm::rope(x, head_dim, position, table);
    }
    portable::norm::rope_twin(x, head_dim, position, table)
}

/// `x += y` (the residual connections), over the shorter of the two.
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
    fastest!(simd::norm::add_in_place(x, y), portable::norm::add_in_place_twin(x, y))
}

/// SwiGLU: `g ← g / (1 + exp(−g)) · u`, over the shorter of the two.
pub(crate) fn swiglu(g: &mut [f32], u: &[f32]) {
    fastest!(simd::swiglu::swiglu(g, u), portable::swiglu::swiglu_twin(g, u))
}

/// Index of the largest logit (the first on ties); NaN never wins; `None` if there is none.
pub(crate) fn argmax(logits: &[f32]) -> Option<usize> {
    fastest!(simd::sampling::argmax(logits), portable::sampling::argmax_twin(logits))
}

/// The largest `v / t` over the logits above −∞, or `None` if there is none.
pub(crate) fn max_scaled(logits: &[f32], t: f32) -> Option<f32> {
    fastest!(simd::sampling::max_scaled(logits, t), portable::sampling::max_scaled_twin(logits, t))
}

/// Every logit's sampling weight `exp(v/t − max)`, 0 more than [`SAMPLING_CUTOFF`] below `max`
/// (see `portable/sampling.rs` for ±∞ and NaN).
///
/// # Panics
/// If `weights` and `logits` differ in length.
pub(crate) fn sampling_weights(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    assert_eq!(logits.len(), weights.len());
    fastest!(simd::sampling::sampling_weights(logits, t, max, weights), portable::sampling::sampling_weights_twin(logits, t, max, weights))
}
