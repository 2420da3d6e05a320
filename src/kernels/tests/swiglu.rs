//! SwiGLU and its polynomial `exp`.

use super::*;
use crate::kernels::math::{EXP_MAX, EXP_MIN, exp_twin};
use crate::kernels::portable::swiglu::swiglu_twin;
use crate::kernels::reference;

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn swiglu_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::swiglu;
    let mut rng = rng(16);
    for n in widths() {
        let mut g = random_f32(&mut rng, n, 40.0);
        let u = random_f32(&mut rng, n, 2.0);
        // The clamps and the special values, where there is room.
        for (i, v) in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -100.0, 100.0, 0.0].into_iter().enumerate() {
            if i < n {
                g[(i * 7) % n] = v;
            }
        }
        let (mut expected, mut fast) = (g.clone(), g.clone());
        swiglu_twin(&mut expected, &u);
        swiglu::swiglu(&mut fast, &u);
        assert!(same_bits(&fast, &expected), "n {n}");
    }
}

/// The polynomial `exp` against `f32::exp`: relative error ≤ 4e-7 over the clamped range.
#[test]
fn exp_twin_matches_f32_exp() {
    let mut x = -100.0f32;
    while x < 100.0 {
        let (a, b) = (exp_twin(x), x.clamp(EXP_MIN, EXP_MAX).exp());
        assert!((a - b).abs() <= 4e-7 * b, "exp({x}) = {a}, expected {b}");
        x += 0.0137;
    }
}

/// Through the polynomial `exp`: within 1e-6 · (1 + |reference|).
#[test]
fn swiglu_twin_matches_reference() {
    let mut rng = rng(7);
    for n in widths() {
        let g = random_f32(&mut rng, n, 30.0);
        let u = random_f32(&mut rng, n, 2.0);
        let (mut expected, mut got) = (g.clone(), g.clone());
        reference::swiglu(&mut expected, &u);
        swiglu_twin(&mut got, &u);
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "n {n}: {a} vs {b}");
        }
    }
}
