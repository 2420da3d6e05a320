//! Twins of the SIMD RMSNorm, RoPE and residual addition.

use crate::kernels::layout::RopeTable;

/// RMSNorm epsilon used by every norm of the model.
pub(crate) const RMS_EPS: f32 = 1e-6;

/// Twin of the SIMD RMSNorm: `out = (x · inv) · gain` with `inv = 1 / sqrt(Σx²/n + ε)`, the
/// squares summed in four lanes (element `m` in lane `m mod 4`, the last `n mod 4` added to lanes
/// 0‥ after) and reduced as `(s0 + s2) + (s1 + s3)`.
pub(crate) fn rms_norm_twin(x: &[f32], gain: &[f32], out: &mut [f32]) {
    let mut lanes = [0f32; 4];
    for (m, &v) in x.iter().enumerate() {
        lanes[m % 4] += v * v;
    }
    let inv = rms_inverse(lanes, x.len());
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gain) {
        *o = (v * inv) * g;
    }
}

/// `1 / sqrt(mean + ε)` from the four lane sums of squares.
pub(crate) fn rms_inverse(lanes: [f32; 4], n: usize) -> f32 {
    let mean_sq = ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) / n as f32;
    1.0 / (mean_sq + RMS_EPS).sqrt()
}

/// Rotates adjacent pairs `(2i, 2i+1)` of every head of `x` (all heads of one position) by the
/// angles of `position`: exactly the reference's f32 operations per element, which the SIMD
/// version repeats.
pub(crate) fn rope_twin(x: &mut [f32], head_dim: usize, position: usize, table: &RopeTable) {
    assert!(head_dim <= 2 * table.half(), "heads of {head_dim} with a table for {}", 2 * table.half());
    let (cos, sin) = (table.cos(position), table.sin(position));
    for head in x.chunks_exact_mut(head_dim) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }
}

/// `x += y` (the residual connections), over the shorter of the two.
pub(crate) fn add_in_place_twin(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}
