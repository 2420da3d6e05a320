//! Int8 logits and the row-quad interleave.

use super::*;
use crate::kernels::portable::logits::{int8_logits_twin, interleave_rows4_twin};
use crate::kernels::quant::{absmax, logits_quant_range};
use crate::kernels::reference;

/// Even column counts (the layout pairs columns): the edge widths made even, the models' widths,
/// the straight-line kernels' (256, 384, 512, 768) and past the SIMD kernel's limit (2048).
fn column_counts() -> Vec<usize> {
    let mut cols: Vec<usize> = EDGE_WIDTHS.iter().map(|w| w + w % 2).collect();
    cols.extend([2, 6, 14, 18, 128, 256, 384, 512, 768, 1000, 2048, 2056]);
    cols
}

fn twin(head: &crate::kernels::layout::QuantizedMatrix, h: &[f32], rows: usize) -> Vec<f32> {
    let mut logits = vec![1.0; rows];
    int8_logits_twin(head, h, &mut logits);
    logits
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn logits_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::logits;
    let mut rng = rng(11);
    for cols in column_counts() {
        for rows in EDGE_WIDTHS.into_iter().chain([37]) {
            let head = quantized(rows, cols, 0.02, &random_i8(&mut rng, rows * cols));
            for scale in [2.0, 0.0, f32::NAN] {
                let mut h = random_f32(&mut rng, cols, if scale.is_nan() { 1.0 } else { scale });
                if scale.is_nan() && cols > 0 {
                    h[cols / 2] = scale;
                }
                let mut fast = vec![7.0; rows];
                logits::int8_logits(&head, &h, &mut fast);
                assert!(same_bits(&fast, &twin(&head, &h, rows)), "cols {cols} rows {rows} scale {scale}");
            }
        }
    }
}

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[test]
fn interleave_simd_equals_twin() {
    use crate::kernels::wasm32::simd128::logits;
    let mut rng = rng(12);
    for cols in column_counts() {
        let rows4: Vec<u8> = (0..4 * cols).map(|_| rng.next_u32() as u8).collect();
        let mut expected = vec![0u8; 4 * cols];
        interleave_rows4_twin(&rows4, &mut expected);
        let mut fast = vec![1u8; 4 * cols];
        logits::interleave_rows4(&rows4, &mut fast);
        assert_eq!(fast, expected, "cols {cols}");
    }
}

/// The hidden state's rounding (≤ step/2 per column) is the only error: |Δ| ≤ scale · 127 ·
/// step/2 · cols.
#[test]
fn logits_twin_matches_reference() {
    let mut rng = rng(3);
    for cols in column_counts() {
        for rows in EDGE_WIDTHS.into_iter().chain([37]) {
            let head = quantized(rows, cols, 0.01, &random_i8(&mut rng, rows * cols));
            let h = random_f32(&mut rng, cols, 4.0);
            let mut expected = vec![0.0; rows];
            reference::quantized_logits(&head, &h, &mut expected);
            let got = twin(&head, &h, rows);
            let step = absmax(&h) / logits_quant_range(cols) as f32;
            for (a, b) in got.iter().zip(&expected) {
                let bound = 0.01 * 127.0 * step * cols as f32 / 2.0 + 1e-5 * b.abs();
                assert!((a - b).abs() <= bound, "cols {cols} rows {rows}: {a} vs {b}");
            }
        }
    }
}

/// The twin interleave puts every value where the documented layout says (written out here
/// independently of `row_quad_index`).
#[test]
fn interleave_twin_matches_the_documented_layout() {
    let mut rng = rng(8);
    for cols in column_counts() {
        let rows4: Vec<u8> = (0..4 * cols).map(|_| rng.next_u32() as u8).collect();
        let mut quad = vec![0u8; 4 * cols];
        interleave_rows4_twin(&rows4, &mut quad);
        for r in 0..4 {
            for c in 0..cols {
                assert_eq!(quad[(c / 2) * 8 + r * 2 + c % 2], rows4[r * cols + c], "cols {cols} ({r}, {c})");
            }
        }
    }
}
