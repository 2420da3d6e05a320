//! Lane helpers shared by the SIMD kernels: quantization codes, the largest magnitude, `exp`.

use core::arch::wasm32::*;

use crate::kernels::math::{EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};

/// [`Quantizer::code`](crate::kernels::quant::Quantizer::code) of four lanes: `round_ties_even(x · inv)` as i32.
#[inline(always)]
pub(super) fn codes4(x: v128, inv: v128) -> v128 {
    i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(x, inv)))
}

/// The codes of the 8 floats at `p`, narrowed to i16 (callers' ranges fit).
/// # Safety
/// `p` must point to 8 readable floats.
#[inline(always)]
pub(super) unsafe fn codes8(p: *const f32, inv: v128) -> v128 {
    // SAFETY: the caller's contract: 8 readable floats at p.
    unsafe { i16x8_narrow_i32x4(codes4(v128_load(p.cast()), inv), codes4(v128_load(p.add(4).cast()), inv)) }
}

/// Largest |x| of a slice whose length is a multiple of 4, as the twin computes it (NaN → NaN,
/// which the quantizer then rejects like the twin's infinity).
pub(super) fn absmax(x: &[f32]) -> f32 {
    let abs_mask = u32x4_splat(0x7fff_ffff);
    let mut m = u32x4_splat(0);
    for chunk in x.chunks_exact(4) {
        // SAFETY: chunk has 4 f32 = 16 bytes; v128 loads need no alignment.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        // Non-negative floats order like their bit patterns; NaN sorts above infinity.
        m = u32x4_max(m, v128_and(v, abs_mask));
    }
    let lanes = [u32x4_extract_lane::<0>(m), u32x4_extract_lane::<1>(m), u32x4_extract_lane::<2>(m), u32x4_extract_lane::<3>(m)];
    f32::from_bits(lanes.into_iter().max().unwrap_or(0))
}

/// [`exp_twin`](crate::kernels::math::exp_twin) on four lanes, step for step (so the results are identical).
#[inline(always)]
pub(super) fn exp4(x: v128) -> v128 {
    let x = f32x4_pmax(f32x4_splat(EXP_MIN), x);
    let x = f32x4_pmin(f32x4_splat(EXP_MAX), x);
    let nf = f32x4_nearest(f32x4_mul(x, f32x4_splat(core::f32::consts::LOG2_E)));
    let r = f32x4_sub(f32x4_sub(x, f32x4_mul(nf, f32x4_splat(LN2_HI))), f32x4_mul(nf, f32x4_splat(LN2_LO)));
    let mut poly = f32x4_splat(EXP_POLY[6]);
    seq_macro::seq!(C in 0..6 {
        poly = f32x4_add(f32x4_mul(poly, r), f32x4_splat(EXP_POLY[5 - C]));
    });
    f32x4_mul(poly, i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(nf), i32x4_splat(127)), 23))
}
