//! RMSNorm, RoPE and the residual addition.

use super::*;
use crate::kernels::layout::RopeTable;
use crate::kernels::portable::norm::{add_in_place_twin, rms_norm_twin, rope_twin};
use crate::kernels::reference;

fn rope_table(rng: &mut ChaCha8Rng, head_dim: usize, positions: usize) -> RopeTable {
    let half = head_dim / 2;
    let angles = random_f32(rng, positions * half, 3.0);
    RopeTable::new(half, positions, angles.iter().map(|a| a.cos()).collect(), angles.iter().map(|a| a.sin()).collect()).unwrap()
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn rms_norm_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::norm;
    let mut rng = rng(10);
    for n in widths() {
        let x = random_f32(&mut rng, n, 3.0);
        let gain = random_f32(&mut rng, n, 2.0);
        let (mut expected, mut fast) = (vec![0.0; n], vec![1.0; n]);
        rms_norm_twin(&x, &gain, &mut expected);
        norm::rms_norm(&x, &gain, &mut fast);
        assert!(same_bits(&fast, &expected), "n {n}");
    }
}

/// Four lane sums instead of one sequential sum: the sums of squares may differ by the bound of
/// recursive summation (n · ε relative), the inverse square root by half that, plus 1e-6.
/// (Bugs — a lane, an element or ε missed — differ by far more.)
#[test]
fn rms_norm_twin_matches_reference() {
    let mut rng = rng(10);
    for n in widths() {
        let x = random_f32(&mut rng, n, 3.0);
        let gain = random_f32(&mut rng, n, 2.0);
        let (mut expected, mut got) = (vec![0.0; n], vec![0.0; n]);
        reference::rms_norm(&x, &gain, &mut expected);
        rms_norm_twin(&x, &gain, &mut got);
        let relative = 1e-6 + n as f32 * f32::EPSILON / 2.0;
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() <= relative * (1.0 + b.abs()), "n {n}: {a} vs {b}");
        }
    }
}

/// The SIMD RoPE takes head widths that are a multiple of 8.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn rope_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::norm;
    let mut rng = rng(13);
    for head_dim in [8, 16, 24, 64] {
        let table = rope_table(&mut rng, head_dim, 5);
        for heads in [1, 3, 8] {
            for position in [0, 4] {
                let x = random_f32(&mut rng, head_dim * heads, 2.0);
                let (mut expected, mut fast) = (x.clone(), x.clone());
                rope_twin(&mut expected, head_dim, position, &table);
                norm::rope(&mut fast, head_dim, position, &table);
                assert!(same_bits(&fast, &expected), "head_dim {head_dim} heads {heads} position {position}");
            }
        }
    }
}

/// The twin does per element exactly the reference's f32 operations: equal bits.
#[test]
fn rope_twin_matches_reference() {
    let mut rng = rng(14);
    for head_dim in EDGE_WIDTHS.into_iter().filter(|w| w % 2 == 0 && *w > 0).chain([2, 6]) {
        let table = rope_table(&mut rng, head_dim, 5);
        for heads in [1, 3, 8] {
            for position in [0, 2, 4] {
                let x = random_f32(&mut rng, head_dim * heads, 2.0);
                let (mut expected, mut got) = (x.clone(), x.clone());
                reference::rope(&mut expected, head_dim, position, &table);
                rope_twin(&mut got, head_dim, position, &table);
                assert!(same_bits(&got, &expected), "head_dim {head_dim} heads {heads} position {position}");
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn add_in_place_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::norm;
    let mut rng = rng(15);
    for n in widths() {
        let (x, y) = (random_f32(&mut rng, n, 3.0), random_f32(&mut rng, n, 3.0));
        let (mut expected, mut fast) = (x.clone(), x.clone());
        add_in_place_twin(&mut expected, &y);
        norm::add_in_place(&mut fast, &y);
        assert!(same_bits(&fast, &expected), "n {n}");
    }
}

/// Each sum rounded once: the f64 sum of two f32 rounded to f32 is the correctly rounded f32 sum.
#[test]
fn add_in_place_twin_matches_reference() {
    let mut rng = rng(15);
    for n in widths() {
        let (x, y) = (random_f32(&mut rng, n, 3.0), random_f32(&mut rng, n, 3.0));
        let mut got = x.clone();
        add_in_place_twin(&mut got, &y);
        let expected: Vec<f32> = x.iter().zip(&y).map(|(&a, &b)| (f64::from(a) + f64::from(b)) as f32).collect();
        assert!(same_bits(&got, &expected), "n {n}");
    }
}
