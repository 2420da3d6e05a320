//! The ternary octonion linear (lookup tables).

use super::*;
use crate::kernels::layout::TernaryLinear;
use crate::kernels::portable::ternary::{table_len_i32, ternary_linear_twin, ternary_linears_twin};
use crate::kernels::quant::absmax;
use crate::kernels::reference::{self, OctonionLinear};

/// (in_o, out_o): every edge width as either side (against 3 or 5 on the other), the models'
/// layers (n_embd / 8 and hidden / 8 octonions), and widths past the straight-line row kernels
/// (stride 64 is the widest; 260 and 300 take the loop).
fn shapes() -> Vec<(usize, usize)> {
    let mut shapes: Vec<(usize, usize)> = EDGE_WIDTHS.iter().flat_map(|&w| [(w, 3), (5, w)]).collect();
    shapes.extend([(8, 8), (8, 22), (22, 8), (16, 16), (16, 43), (43, 16), (64, 64), (64, 171), (171, 64), (256, 2), (260, 3), (300, 2)]);
    shapes
}

fn packed(rng: &mut ChaCha8Rng, in_o: usize, out_o: usize) -> (TernaryLinear, Vec<i8>, Vec<f32>) {
    let w = random_ternary(rng, 8 * in_o * out_o);
    let beta = random_f32(rng, out_o, 0.5);
    (TernaryLinear::pack(in_o, out_o, &w, beta.clone()).unwrap(), w, beta)
}

fn twin(layer: &TernaryLinear, x: &[f32]) -> Vec<f32> {
    let mut table = vec![0; table_len_i32(layer)];
    let mut y = vec![1.0; 8 * layer.out_o()];
    ternary_linear_twin(layer, x, &mut y, &mut table);
    y
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn ternary_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::ternary;
    let mut rng = rng(5);
    for (in_o, out_o) in shapes() {
        let (layer, _, _) = packed(&mut rng, in_o, out_o);
        for scale in [3.0, 1e-3, 0.0, f32::INFINITY] {
            let mut x = random_f32(&mut rng, 8 * in_o, if scale.is_finite() { scale } else { 1.0 });
            if !scale.is_finite() && !x.is_empty() {
                x[0] = scale;
            }
            let mut fast = vec![7.0; 8 * out_o];
            ternary::ternary_linear(&layer, &x, &mut fast);
            assert!(same_bits(&fast, &twin(&layer, &x)), "in_o {in_o} out_o {out_o} scale {scale}");
        }
    }
    // Several layers on one table (q, k, v; gate, up).
    let (a, _, _) = packed(&mut rng, 64, 64);
    let (b, _, _) = packed(&mut rng, 64, 171);
    let x = random_f32(&mut rng, 512, 2.0);
    let (mut fa, mut fb) = (vec![1.0; 512], vec![1.0; 8 * 171]);
    ternary::ternary_linears(&mut [(&a, &mut fa), (&b, &mut fb)], &x);
    assert!(same_bits(&fa, &twin(&a, &x)) && same_bits(&fb, &twin(&b, &x)), "shared table");
}

/// The integer path against the f32 reference: the only error is activation rounding (≤ step/2
/// per input), so |Δ| ≤ β · step/2 · (nonzero weights in the row) ≤ β · step · 8 · in_o.
#[test]
fn ternary_twin_matches_reference() {
    let mut rng = rng(2);
    for (in_o, out_o) in shapes() {
        let (layer, w, beta) = packed(&mut rng, in_o, out_o);
        let x = random_f32(&mut rng, 8 * in_o, 3.0);
        let dense = OctonionLinear { in_o, out_o, weights: w, beta: beta.clone() };
        let mut expected = vec![0.0; 8 * out_o];
        reference::octonion_linear(&dense, &x, &mut expected);
        let got = twin(&layer, &x);
        let step = absmax(&x) / layer.quant_range() as f32;
        for (idx, (a, b)) in got.iter().zip(&expected).enumerate() {
            let r = idx % out_o;
            let bound = beta[r].abs() * step * (8 * in_o) as f32 + 1e-5 * b.abs() + 1e-6;
            assert!((a - b).abs() <= bound, "in_o {in_o} out_o {out_o} [{idx}]: {a} vs {b} (bound {bound})");
        }
    }
}

#[test]
fn ternary_twin_shares_one_table_between_layers() {
    let mut rng = rng(8);
    let (a, _, _) = packed(&mut rng, 64, 64);
    let (b, _, _) = packed(&mut rng, 64, 171);
    let x = random_f32(&mut rng, 512, 2.0);
    let mut table = vec![0; table_len_i32(&a)];
    let (mut ya, mut yb) = (vec![0.0; 512], vec![0.0; 8 * 171]);
    ternary_linears_twin(&mut [(&a, &mut ya), (&b, &mut yb)], &x, &mut table);
    assert!(same_bits(&ya, &twin(&a, &x)) && same_bits(&yb, &twin(&b, &x)));
}

#[test]
fn ternary_twin_handles_zero_and_non_finite_input() {
    let layer = TernaryLinear::pack(4, 2, &[1i8; 8 * 4 * 2], vec![1.0; 2]).unwrap();
    assert!(twin(&layer, &[0.0; 32]).iter().all(|&v| v == 0.0));
    let mut x = vec![1.0; 32];
    x[3] = f32::INFINITY;
    assert!(twin(&layer, &x).iter().all(|v| v.is_nan()));
    x[3] = f32::NAN;
    assert!(twin(&layer, &x).iter().all(|v| v.is_nan()));
}
