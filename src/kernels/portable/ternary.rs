//! Twin of the SIMD ternary octonion linear: lookup tables in plain Rust.
//!
//! Output part `i` of row `r` is `Σ_k SIGN[i][i⊕k] · U_k[r][i⊕k]` with `U_k[r] = Σ_c W_k[r][c] · X[c]`,
//! where `X[c]` holds the 8 input parts of column `c`. Columns are taken 4 at a time: for each group
//! the kernel tabulates `Σ_j d_j · X[c_j]` for all 3⁴ = 81 sign patterns `d ∈ {0, +1, −1}⁴` (8 lanes
//! of i32 each), and each weight row stores, per part `k` and group, the byte offset of its pattern
//! in that table ([`TernaryLinear`]). Activations are quantized per call to i32 with a range chosen
//! so that no sum can overflow (22 bits for a 512-wide layer), which keeps the arithmetic exact.

use crate::kernels::layout::{GROUP, GROUP_BYTES, TernaryLinear};
use crate::kernels::quant::{Quantizer, absmax, degenerate_output};
use crate::octonion::SIGN;

/// Scratch space of one lookup table (i32 lanes, 8 per entry).
pub(crate) fn table_len_i32(layer: &TernaryLinear) -> usize {
    layer.table_bytes() / 4
}

#[cfg(test)]
/// Twin of the SIMD kernel: `y = layer(x)`, `x` as `[8][in_o]`, `y` as `[8][out_o]`.
/// `table` must hold at least [`table_len_i32`] values.
pub(crate) fn ternary_linear_twin(layer: &TernaryLinear, x: &[f32], y: &mut [f32], table: &mut [i32]) {
    ternary_linears_twin(&mut [(layer, y)], x, table)
}

/// Twin of the SIMD kernel for several layers of one input width applied to the same `x` (one
/// quantization, one table).
pub(crate) fn ternary_linears_twin(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32], table: &mut [i32]) {
    let Some((first, _)) = layers.first() else { return };
    let in_o = first.in_o();
    assert!(layers.iter().all(|(l, _)| l.in_o() == in_o));
    let m = absmax(&x[..8 * in_o]);
    let Some(quant) = Quantizer::new(m, first.quant_range()) else {
        for (layer, y) in layers.iter_mut() {
            degenerate_output(m, &mut y[..8 * layer.out_o()]);
        }
        return;
    };
    build_table_twin(first, x, quant, table);
    for (layer, y) in layers.iter_mut() {
        rows_twin(layer, quant, y, table);
    }
}

fn rows_twin(layer: &TernaryLinear, quant: Quantizer, y: &mut [f32], table: &[i32]) {
    let out_o = layer.out_o();
    for r in 0..out_o {
        let mut out = [0i32; 8];
        for k in 0..8 {
            let mut u = [0i32; 8];
            for &offset in &layer.offsets()[(r * 8 + k) * layer.stride()..][..layer.stride()] {
                let entry = &table[offset as usize / 4..][..8];
                for (a, &b) in u.iter_mut().zip(entry) {
                    *a = a.wrapping_add(b);
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                let v = u[i ^ k];
                *o = o.wrapping_add(if SIGN[i][i ^ k] > 0.0 { v } else { v.wrapping_neg() });
            }
        }
        let factor = layer.beta()[r] * quant.step;
        for (i, &o) in out.iter().enumerate() {
            y[i * out_o + r] = o as f32 * factor;
        }
    }
}

/// Fills the lookup table for quantized `x` (shared layout with the SIMD kernel).
fn build_table_twin(layer: &TernaryLinear, x: &[f32], quant: Quantizer, table: &mut [i32]) {
    let in_o = layer.in_o();
    for g in 0..layer.groups() {
        let t = &mut table[g * GROUP_BYTES / 4..][..GROUP_BYTES / 4];
        t[..8].fill(0);
        let mut filled = 1;
        for j in 0..GROUP {
            let c = g * GROUP + j;
            let column: [i32; 8] = std::array::from_fn(|p| if c < in_o { quant.code(x[p * in_o + c]) } else { 0 });
            for e in 0..filled {
                for p in 0..8 {
                    let base = t[e * 8 + p];
                    t[(e + filled) * 8 + p] = base.wrapping_add(column[p]);
                    t[(e + 2 * filled) * 8 + p] = base.wrapping_sub(column[p]);
                }
            }
            filled *= 3;
        }
    }
}
