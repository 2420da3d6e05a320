//! The sampling passes: argmax, the largest scaled logit, the weights `exp(v/t − max)`.

use super::*;
use crate::kernels::SAMPLING_CUTOFF;
use crate::kernels::portable::sampling::{argmax_twin, max_scaled_twin, sampling_weights_twin};

/// Logits with the special values placed where there is room.
fn logits(rng: &mut ChaCha8Rng, n: usize, specials: &[f32]) -> Vec<f32> {
    let mut v = random_f32(rng, n, 30.0);
    for (i, &special) in specials.iter().enumerate() {
        if i < n {
            v[i * 3 % n] = special;
        }
    }
    v
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn argmax_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::sampling;
    let mut rng = rng(17);
    for n in widths() {
        let mut v = logits(&mut rng, n, &[f32::NAN]);
        assert_eq!(sampling::argmax(&v), argmax_twin(&v), "n {n}");
        if n > 0 {
            // A tie with the maximum at the end, then nothing above −∞, then only NaN.
            let m = v.iter().copied().filter(|x| !x.is_nan()).fold(f32::MIN, f32::max);
            v[n - 1] = m;
            assert_eq!(sampling::argmax(&v), argmax_twin(&v), "ties n {n}");
            v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
            assert_eq!(sampling::argmax(&v), argmax_twin(&v), "-inf n {n}");
            v.iter_mut().for_each(|x| *x = f32::NAN);
            assert_eq!(sampling::argmax(&v), argmax_twin(&v), "NaN n {n}");
        }
    }
}

/// Against an independent computation: the first index of the largest non-NaN value.
#[test]
fn argmax_twin_matches_reference() {
    let mut rng = rng(18);
    for n in widths() {
        for specials in [&[][..], &[f32::NAN, f32::NEG_INFINITY], &[f32::INFINITY, 1.0, f32::INFINITY]] {
            let v = logits(&mut rng, n, specials);
            let best = v.iter().copied().filter(|x| !x.is_nan()).reduce(f32::max);
            let expected = best.and_then(|b| v.iter().position(|&x| x == b));
            assert_eq!(argmax_twin(&v), expected, "n {n} {specials:?}");
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn sampling_weights_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::sampling;
    let mut rng = rng(19);
    for n in widths() {
        for t in [0.8, 1e-3, 2.5] {
            for specials in [&[f32::NAN, f32::NEG_INFINITY, 0.0, -0.0][..], &[f32::INFINITY, 2.0, f32::INFINITY]] {
                let v = logits(&mut rng, n, specials);
                let max = max_scaled_twin(&v, t);
                assert_eq!(sampling::max_scaled(&v, t), max, "max_scaled n {n} t {t}");
                let Some(max) = max else { continue };
                let mut expected = vec![0.0; n];
                sampling_weights_twin(&v, t, max, &mut expected);
                let mut fast = vec![7.0; n];
                sampling::sampling_weights(&v, t, max, &mut fast);
                assert!(same_bits(&fast, &expected), "weights n {n} t {t} {specials:?}");
            }
        }
    }
}

/// Against f64: the largest `v/t` exactly as f32 division gives it, and each weight within the
/// polynomial's error plus the f32 rounding of `v/t − max`; 0 beyond the cutoff, NaN and −∞.
#[test]
fn sampling_weights_twin_matches_reference() {
    let mut rng = rng(9);
    for n in widths() {
        for t in [0.7f32, 1.0, 0.05] {
            let v = logits(&mut rng, n, &[f32::NAN, f32::NEG_INFINITY]);
            let finite: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
            let Some(max) = max_scaled_twin(&v, t) else {
                assert!(finite.is_empty(), "n {n}");
                continue;
            };
            let expected_max = finite.iter().map(|&x| f64::from(x) / f64::from(t)).fold(f64::MIN, f64::max);
            assert!((f64::from(max) - expected_max).abs() <= 1e-6 * expected_max.abs(), "n {n} t {t}");
            let mut w = vec![0.0; n];
            sampling_weights_twin(&v, t, max, &mut w);
            for (i, (&x, &wi)) in v.iter().zip(&w).enumerate() {
                let d = f64::from(x) / f64::from(t) - f64::from(max);
                if !x.is_finite() || d < -f64::from(SAMPLING_CUTOFF) - 1e-3 {
                    assert_eq!(wi, 0.0, "t {t} [{i}]");
                } else if d > -f64::from(SAMPLING_CUTOFF) + 1e-3 {
                    let e = d.exp();
                    let rounding = 2.0 * f64::from(f32::EPSILON) * (f64::from(x / t).abs() + f64::from(max).abs());
                    assert!((f64::from(wi) - e).abs() <= (1e-6 + rounding) * e, "t {t} [{i}]: {wi} vs {e}");
                }
            }
        }
    }
    // +∞ logits share all the mass.
    let v = [1.0, f32::INFINITY, 3.0, f32::INFINITY];
    let max = max_scaled_twin(&v, 0.5).unwrap();
    let mut w = [9.0; 4];
    sampling_weights_twin(&v, 0.5, max, &mut w);
    assert_eq!(w, [0.0, 1.0, 0.0, 1.0]);
    assert_eq!(max_scaled_twin(&[f32::NAN, f32::NEG_INFINITY], 1.0), None);
}
