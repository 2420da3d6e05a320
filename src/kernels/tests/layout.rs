//! The load-time layouts: what their constructors establish.

use super::*;
use crate::kernels::layout::{GROUP_BYTES, HeadMixer, MAX_TABLE_BYTES, PackedMixer, TernaryLinear};

#[test]
fn packing_round_trips_every_weight_and_keeps_offsets_in_the_table() {
    let mut rng = rng(1);
    for (in_o, out_o) in EDGE_WIDTHS.iter().flat_map(|&w| [(w, 7), (9, w)]).chain([(64, 64), (171, 5), (1616, 1)]) {
        let w = random_ternary(&mut rng, 8 * in_o * out_o);
        let layer = TernaryLinear::pack(in_o, out_o, &w, vec![1.0; out_o]).unwrap();
        assert_eq!(layer.to_values(), w, "in_o {in_o} out_o {out_o}");
        assert_eq!(layer.offsets().len(), out_o * 8 * layer.stride());
        assert!(layer.stride().is_multiple_of(4) && layer.stride() >= layer.groups() && layer.stride() < layer.groups() + 4);
        // Every lookup, padding included, reads a whole entry inside the table.
        assert!(layer.offsets().iter().all(|&o| o % 32 == 0 && o as usize + 32 <= layer.table_bytes().max(32)));
        assert!(layer.table_bytes() <= MAX_TABLE_BYTES);
    }
}

#[test]
fn a_layer_wider_than_the_table_is_refused() {
    // 1616 input octonions (404 groups) are the most whose tables fit; one group more does not.
    let widest = TernaryLinear::pack(1616, 1, &vec![0; 8 * 1616], vec![1.0]).unwrap().table_bytes();
    assert!(widest <= MAX_TABLE_BYTES && widest + GROUP_BYTES > MAX_TABLE_BYTES);
    assert!(TernaryLinear::pack(1617, 1, &vec![0; 8 * 1617], vec![1.0]).is_none());
    assert!(1617usize.div_ceil(4) * GROUP_BYTES > MAX_TABLE_BYTES);
}

#[test]
fn mixer_codes_stand_for_the_weights_within_half_a_step() {
    let mut rng = rng(4);
    for hd in [1, 3, 4, 8, 16, 64] {
        let mixer = HeadMixer { head_dim: hd, weights: random_f32(&mut rng, 8 * hd * hd, 0.2), beta: random_f32(&mut rng, hd, 1.0) };
        let packed = PackedMixer::pack(&mixer);
        for k in 0..8 {
            for o in 0..hd {
                let sc = packed.scales()[o * 8 + k];
                for i in 0..hd {
                    let w = mixer.weights[k * hd * hd + i * hd + o];
                    assert!((f32::from(packed.codes()[(k * hd + o) * hd + i]) * sc - w).abs() <= sc * 0.51 + w.abs() * 1e-6);
                }
            }
        }
    }
}

#[test]
fn row_quads_hold_every_value_where_the_index_says() {
    let mut rng = rng(8);
    for (rows, cols) in [(9, 8), (4, 24), (3, 16), (13, 40), (8, 512), (0, 8), (5, 0), (1, 2), (17, 64)] {
        let values = random_i8(&mut rng, rows * cols);
        let m = quantized(rows, cols, 1.0, &values);
        assert_eq!(m.data().len(), values.len());
        let mut seen = vec![false; values.len()];
        for r in 0..rows {
            for c in 0..cols {
                let i = m.index(r, c);
                // The layout as documented, written out independently of `row_quad_index`.
                let expected = if r < rows / 4 * 4 { (r / 4) * 4 * cols + (c / 2) * 8 + (r % 4) * 2 + c % 2 } else { r * cols + c };
                assert_eq!(i, expected, "{rows}×{cols} ({r}, {c})");
                assert_eq!(m.data()[i], values[r * cols + c], "{rows}×{cols} ({r}, {c})");
                seen[i] = true;
            }
            assert!(m.row(r).eq(values[r * cols..(r + 1) * cols].iter().copied()));
        }
        assert!(seen.iter().all(|&s| s), "{rows}×{cols}: a permutation");
    }
}
