//! `exp` as explicit f32 steps (SwiGLU gate, softmax, sampling weights), so that the SIMD
//! kernels can repeat them lane by lane and round exactly alike.

/// Inputs are clamped to `[EXP_MIN, EXP_MAX]` (below, the result is subnormal or 0; above, ∞).
pub(crate) const EXP_MIN: f32 = -87.0;
/// See [`EXP_MIN`].
pub(crate) const EXP_MAX: f32 = 88.0;
/// `ln 2` in two parts for the range reduction: `LN2_HI` has trailing zero bits, so `n · LN2_HI`
/// is exact for the `n` that occur.
pub(crate) const LN2_HI: f32 = 0.693_145_75;
/// `ln 2 − LN2_HI`.
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6;
/// Taylor coefficients `1/i!`, `i = 0‥6`.
pub(crate) const EXP_POLY: [f32; 7] = [1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0];

/// `exp` written as explicit f32 steps so the SIMD kernel can repeat them exactly: clamp to
/// [-87, 88], `n = round(x·log2 e)`, `r = x − n·ln 2` (two parts), a degree-6 Taylor polynomial
/// on |r| ≤ ln2/2 (relative error ≤ 4e-7 against `f32::exp`), times 2^n built in the exponent bits.
pub(crate) fn exp_twin(x: f32) -> f32 {
    // The comparisons of wasm's f32x4.pmax/pmin, so NaN clamps the same way in both kernels.
    let x = if EXP_MIN < x { x } else { EXP_MIN };
    let x = if x < EXP_MAX { x } else { EXP_MAX };
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = EXP_POLY[6];
    for &c in EXP_POLY[..6].iter().rev() {
        p = p * r + c;
    }
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}
