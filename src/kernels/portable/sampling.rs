//! Twins of the SIMD sampling passes: argmax, the largest scaled logit, and the weights
//! `exp(v/t − max)`.

use crate::kernels::math::exp_twin;

/// Scaled logits this far below the largest get weight 0 (each would carry < e^-40 of the mass).
pub(crate) const SAMPLING_CUTOFF: f32 = 40.0;

/// Index of the largest logit (the first one on ties); NaN never wins; `None` for no logits or
/// only NaN.
pub(crate) fn argmax_twin(logits: &[f32]) -> Option<usize> {
    let mut best: Option<(usize, f32)> = None;
    for (i, &v) in logits.iter().enumerate() {
        if v.is_nan() {
            continue;
        }
        if best.is_none_or(|(_, b)| v > b) {
            best = Some((i, v));
        }
    }
    best.map(|(i, _)| i)
}

/// The largest `v / t` over the logits above −∞ (NaN and −∞ are never sampled), or `None` if
/// there is none. Order-independent: any order of comparisons finds the same value (±0 aside,
/// which gives the same weights).
pub(crate) fn max_scaled_twin(logits: &[f32], t: f32) -> Option<f32> {
    let mut max = f32::NEG_INFINITY;
    for &v in logits {
        let s = if v > f32::NEG_INFINITY { v / t } else { f32::NEG_INFINITY };
        max = if max < s { s } else { max };
    }
    (max > f32::NEG_INFINITY).then_some(max)
}

/// Twin of the SIMD sampling weights: `w = exp(v/t − max)` (by [`exp_twin`]) where
/// `v/t ≥ max − SAMPLING_CUTOFF`, else 0; when `max` is +∞ each +∞ logit gets weight 1 and the
/// rest 0. `weights` has one entry per logit.
pub(crate) fn sampling_weights_twin(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    let floor = max - SAMPLING_CUTOFF;
    #[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(s >= floor)` is also true for NaN, which must get weight 0")]
    for (w, &v) in weights.iter_mut().zip(logits) {
        let s = v / t;
        let d = s - max;
        *w = if !(s >= floor) {
            0.0
        } else if d.is_nan() {
            1.0
        } else {
            exp_twin(d)
        };
    }
}
