//! The sampling passes — argmax, the largest scaled logit, the weights `exp(v/t − max)` — SIMD128;
//! twins in `portable/sampling.rs`.

use core::arch::wasm32::*;

use super::lanes::exp4;
use crate::kernels::portable::sampling::{SAMPLING_CUTOFF, max_scaled_twin, sampling_weights_twin};

/// Index of the largest logit, the first on ties, NaN never winning: the same answer as
/// [`argmax_twin`](crate::kernels::portable::sampling::argmax_twin), with four lanes compared at a time (`f32x4.gt` + two
/// `v128.bitselect` per 4 logits instead of a scalar float compare costing 3 per logit).
pub(crate) fn argmax(logits: &[f32]) -> Option<usize> {
    let chunks = logits.len() / 4;
    let mut best = f32x4_splat(f32::NEG_INFINITY);
    let mut best_index = i32x4_splat(-1);
    let mut index = i32x4(0, 1, 2, 3);
    let four = i32x4_splat(4);
    for c in 0..chunks {
        // SAFETY: chunk c of the slice.
        let v = unsafe { v128_load(logits.as_ptr().add(4 * c).cast()) };
        // Strictly greater: NaN is never greater, ties keep the earlier index.
        let better = f32x4_gt(v, best);
        best = v128_bitselect(v, best, better);
        best_index = v128_bitselect(index, best_index, better);
        index = i32x4_add(index, four);
    }
    let mut result: Option<(usize, f32)> = None;
    let lanes = [
        (i32x4_extract_lane::<0>(best_index), f32x4_extract_lane::<0>(best)),
        (i32x4_extract_lane::<1>(best_index), f32x4_extract_lane::<1>(best)),
        (i32x4_extract_lane::<2>(best_index), f32x4_extract_lane::<2>(best)),
        (i32x4_extract_lane::<3>(best_index), f32x4_extract_lane::<3>(best)),
    ];
    let tail = (4 * chunks..logits.len()).map(|i| (i as i32, logits[i]));
    for (i, v) in lanes.into_iter().chain(tail) {
        if i < 0 || v.is_nan() {
            continue;
        }
        let i = i as usize;
        if result.is_none_or(|(bi, bv)| v > bv || (v == bv && i < bi)) {
            result = Some((i, v));
        }
    }
    // Nothing above -inf: the scalar version answers the first entry that is not NaN.
    match result {
        Some((i, v)) if v > f32::NEG_INFINITY => Some(i),
        _ => logits.iter().position(|v| !v.is_nan()),
    }
}

/// [`max_scaled_twin`], four logits at a time (`f32x4.div`, a mask for the logits
/// above −∞, `f32x4.pmax`).
pub(crate) fn max_scaled(logits: &[f32], t: f32) -> Option<f32> {
    let tv = f32x4_splat(t);
    let neg_inf = f32x4_splat(f32::NEG_INFINITY);
    let mut m = neg_inf;
    let mut chunks = logits.chunks_exact(4);
    for chunk in &mut chunks {
        // SAFETY: 4 floats.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        let s = v128_bitselect(f32x4_div(v, tv), neg_inf, f32x4_gt(v, neg_inf));
        // pmax(m, s) = m < s ? s : m, as the twin.
        m = f32x4_pmax(m, s);
    }
    let lanes = [f32x4_extract_lane::<0>(m), f32x4_extract_lane::<1>(m), f32x4_extract_lane::<2>(m), f32x4_extract_lane::<3>(m)];
    let tail = max_scaled_twin(chunks.remainder(), t).unwrap_or(f32::NEG_INFINITY);
    let max = lanes.into_iter().chain([tail]).fold(f32::NEG_INFINITY, |max, s| if max < s { s } else { max });
    (max > f32::NEG_INFINITY).then_some(max)
}

/// [`sampling_weights_twin`], four logits at a time with [`exp4`].
pub(crate) fn sampling_weights(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    let n = logits.len().min(weights.len());
    let (tv, mv) = (f32x4_splat(t), f32x4_splat(max));
    let floor = f32x4_splat(max - SAMPLING_CUTOFF);
    let one = f32x4_splat(1.0);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: 4 floats at i in both slices.
        unsafe {
            let s = f32x4_div(v128_load(logits.as_ptr().add(i).cast()), tv);
            let d = f32x4_sub(s, mv);
            let w = v128_bitselect(exp4(d), one, f32x4_eq(d, d));
            v128_store(weights.as_mut_ptr().add(i).cast(), v128_and(w, f32x4_ge(s, floor)));
        }
        i += 4;
    }
    sampling_weights_twin(&logits[i..n], t, max, &mut weights[i..n]);
}
