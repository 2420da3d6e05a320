//! Causal attention (with its softmax).

use super::*;
use crate::kernels::portable::attention::attend_twin;
use crate::kernels::reference;

/// Positions attended: the edge widths (from 1) and the models' contexts (64, 128, 256).
fn positions() -> impl Iterator<Item = usize> {
    EDGE_WIDTHS.into_iter().filter(|&p| p > 0).chain([128, 256])
}

struct Case {
    q: Vec<f32>,
    keys: Vec<f32>,
    values: Vec<f32>,
}

fn case(rng: &mut ChaCha8Rng, width: usize, positions: usize) -> Case {
    Case { q: random_f32(rng, width, 1.0), keys: random_f32(rng, positions * width, 1.0), values: random_f32(rng, positions * width, 1.0) }
}

fn twin(c: &Case, last: usize, hd: usize) -> Vec<f32> {
    let (mut scores, mut out) = (vec![0.0; last + 1], vec![1.0; c.q.len()]);
    attend_twin(&c.q, &c.keys, &c.values, last, hd, &mut scores, &mut out);
    out
}

/// The SIMD attention takes head widths that are a multiple of 4 (64 has its own kernel).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn attention_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::attention;
    let mut rng = rng(6);
    for hd in [4, 8, 12, 16, 64] {
        for heads in [1, 3, 8] {
            for positions in positions() {
                let c = case(&mut rng, hd * heads, positions);
                let last = positions - 1;
                let (mut scores, mut fast) = (vec![0.0; positions], vec![7.0; hd * heads]);
                attention::attend(&c.q, &c.keys, &c.values, last, hd, &mut scores, &mut fast);
                assert!(same_bits(&fast, &twin(&c, last, hd)), "hd {hd} heads {heads} positions {positions}");
            }
        }
    }
}

/// f32 throughout; the twin's polynomial exp (≤ 4e-7 relative) and summation order are the
/// differences: within 1e-5 · (1 + |reference|).
#[test]
fn attention_twin_matches_reference() {
    let mut rng = rng(7);
    for hd in EDGE_WIDTHS.into_iter().filter(|&w| w > 0) {
        for heads in [1, 8] {
            for positions in positions() {
                let c = case(&mut rng, hd * heads, positions);
                let last = positions - 1;
                let (mut scores, mut expected) = (vec![0.0; positions], vec![0.0; hd * heads]);
                reference::attend(&c.q, &c.keys, &c.values, last, hd, &mut scores, &mut expected);
                for (a, b) in twin(&c, last, hd).iter().zip(&expected) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "hd {hd} heads {heads} positions {positions}: {a} vs {b}");
                }
            }
        }
    }
}
