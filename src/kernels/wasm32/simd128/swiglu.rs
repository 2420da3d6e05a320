//! SwiGLU with the polynomial `exp`, SIMD128; twin in `portable/swiglu.rs`.

use core::arch::wasm32::*;

use super::lanes::exp4;
use crate::kernels::math::exp_twin;

/// `g ← g / (1 + exp(−g)) · u`; same results as [`swiglu_twin`](crate::kernels::portable::swiglu::swiglu_twin).
pub(crate) fn swiglu(g: &mut [f32], u: &[f32]) {
    let n = g.len().min(u.len());
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: 4 floats at i in both slices.
        unsafe {
            let gp = g.as_mut_ptr().add(i);
            let gv = v128_load(gp.cast());
            let e = exp4(f32x4_neg(gv));
            let out = f32x4_mul(f32x4_div(gv, f32x4_add(f32x4_splat(1.0), e)), v128_load(u.as_ptr().add(i).cast()));
            v128_store(gp.cast(), out);
        }
        i += 4;
    }
    for (a, &b) in g[i..n].iter_mut().zip(&u[i..n]) {
        *a = *a / (1.0 + exp_twin(-*a)) * b;
    }
}
