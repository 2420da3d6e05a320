//! The octonion head mixer.

use super::*;
use crate::kernels::layout::{HeadMixer, MIXER_INPUT_RANGE, MIXER_WEIGHT_RANGE, PackedMixer};
use crate::kernels::portable::mixer::head_mix_twin;
use crate::kernels::quant::absmax;
use crate::kernels::reference;
use crate::octonion::SIGN;

fn random_mixer(rng: &mut ChaCha8Rng, hd: usize) -> PackedMixer {
    PackedMixer::pack(&HeadMixer { head_dim: hd, weights: random_f32(rng, 8 * hd * hd, 0.2), beta: random_f32(rng, hd, 1.0) })
}

fn twin(mixer: &PackedMixer, z: &[f32]) -> Vec<f32> {
    let mut out = vec![1.0; z.len()];
    head_mix_twin(mixer, z, &mut out);
    out
}

/// The SIMD mixer takes 64-wide heads (the others run the twin on every build).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn mixer_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::mixer;
    let mut rng = rng(5);
    for heads in [8, 16, 64] {
        let packed = random_mixer(&mut rng, 64);
        for scale in [2.0, 1e-4, 0.0, f32::INFINITY] {
            let mut z = random_f32(&mut rng, heads * 64, if scale.is_finite() { scale } else { 1.0 });
            if !scale.is_finite() {
                z[100] = scale;
            }
            let mut fast = vec![7.0; heads * 64];
            mixer::head_mix_64(&packed, &z, &mut fast);
            assert!(same_bits(&fast, &twin(&packed, &z)), "heads {heads} scale {scale}");
        }
    }
}

/// Against the f32 weights the codes stand for, so only the activations' rounding (≤ step/2 per
/// input) and the f32 order remain: |Δ| ≤ β · step/2 · max weight · 8 · head_dim.
#[test]
fn mixer_twin_matches_reference() {
    let mut rng = rng(4);
    for hd in EDGE_WIDTHS.into_iter().filter(|&w| w > 0).chain([32]) {
        for heads in [8, 16] {
            let packed = random_mixer(&mut rng, hd);
            let z = random_f32(&mut rng, heads * hd, 2.0);
            let mut expected = vec![0.0; heads * hd];
            reference::head_mix(&packed.to_reference(), &z, &mut expected);
            let got = twin(&packed, &z);
            let step = absmax(&z) / MIXER_INPUT_RANGE as f32;
            for (n, (a, b)) in got.iter().zip(&expected).enumerate() {
                let o = n % hd;
                let wmax = (0..8).map(|k| packed.scales()[o * 8 + k]).fold(0.0, f32::max) * MIXER_WEIGHT_RANGE as f32;
                let bound = packed.beta()[o].abs() * (step / 2.0 * wmax * (8 * hd) as f32) + 1e-5 * b.abs() + 1e-6;
                assert!((a - b).abs() <= bound, "hd {hd} heads {heads} [{n}]: {a} vs {b} (bound {bound})");
            }
        }
    }
}

/// The reference itself against the octonion rule: with `W[k]` the identity (and the other parts
/// 0), output head `i` is `β · SIGN[i][i⊕k] · z_(i⊕k)`, in every group of 8 heads.
#[test]
fn mixer_reference_mixes_every_group_of_eight() {
    let hd = 4;
    for k in [0usize, 1, 5] {
        let mut weights = vec![0.0; 8 * hd * hd];
        for d in 0..hd {
            weights[k * hd * hd + d * hd + d] = 1.0;
        }
        let beta: Vec<f32> = (0..hd).map(|d| 0.5 + d as f32).collect();
        let mixer = HeadMixer { head_dim: hd, weights, beta: beta.clone() };
        let z: Vec<f32> = (0..16 * hd).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut out = vec![0.0; 16 * hd];
        reference::head_mix(&mixer, &z, &mut out);
        for group in 0..2 {
            for i in 0..8 {
                let j = i ^ k;
                for d in 0..hd {
                    let expected = beta[d] * SIGN[i][j] * z[(group * 8 + j) * hd + d];
                    let got = out[(group * 8 + i) * hd + d];
                    assert!((got - expected).abs() < 1e-6, "k {k} group {group} head {i} dim {d}: {got} vs {expected}");
                }
            }
        }
    }
}
