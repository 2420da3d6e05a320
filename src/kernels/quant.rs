//! Per-call quantization of activations to integers, shared by the twins and the SIMD kernels
//! (both round the same way, so their codes are identical).

/// How one call quantizes its input vector: `q = round_ties_even(x · inv)`, `x ≈ q · step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quantizer {
    /// Codes per unit of input.
    pub(crate) inv: f32,
    /// Input per code (`1 / inv`, computed directly).
    pub(crate) step: f32,
}

impl Quantizer {
    /// For values whose largest magnitude is `absmax`, onto `[-range, range]`. `None` when the
    /// input is all zeros or not finite (callers handle those without the integer path).
    pub(crate) fn new(absmax: f32, range: i32) -> Option<Quantizer> {
        (absmax > 0.0 && absmax.is_finite()).then(|| Quantizer { inv: range as f32 / absmax, step: absmax / range as f32 })
    }

    /// The code of `x` (in `[-range, range]` for `|x| ≤ absmax`).
    #[inline]
    pub(crate) fn code(&self, x: f32) -> i32 {
        (x * self.inv).round_ties_even() as i32
    }
}

/// Largest |x| (NaN propagates as "not finite" through `Quantizer::new`).
#[allow(clippy::neg_cmp_op_on_partial_ord, reason = "`!(a <= m)` is also true for NaN, which must propagate")]
pub(crate) fn absmax(x: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for &v in x {
        let a = v.abs();
        if !(a <= m) {
            m = if a.is_nan() { f32::INFINITY } else { a };
        }
    }
    m
}

/// Handles the inputs the integer path does not: all-zero (output 0) or non-finite (output NaN).
pub(crate) fn degenerate_output(absmax: f32, y: &mut [f32]) {
    y.fill(if absmax == 0.0 { 0.0 } else { f32::NAN });
}

/// Largest hidden-state code for int8 logits over `cols` columns: the i32 dot cannot overflow.
pub(crate) fn logits_quant_range(cols: usize) -> i32 {
    (i32::MAX as usize / (127 * cols.max(1))).min(i16::MAX as usize) as i32
}
