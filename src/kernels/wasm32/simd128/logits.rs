//! Int8 logits (row quads, `dot_i16x8`) and the load-time row-quad interleave, SIMD128; twins in
//! `portable/logits.rs`.

use core::arch::wasm32::*;
use core::ptr::addr_of_mut;

use super::lanes::{absmax, codes8};
use crate::kernels::layout::QuantizedMatrix;
use crate::kernels::portable::logits::{int8_logits_twin, interleave_units_from};
use crate::kernels::quant::{Quantizer, degenerate_output, logits_quant_range};

/// [`interleave_rows4_twin`](crate::kernels::portable::logits::interleave_rows4_twin), 16 bytes of each row at a time: two rounds of
/// interleaving (2-byte units, then 4-byte pairs of them) turn 4 rows' units `u0‥u7` into
/// `r0u0 r1u0 r2u0 r3u0 r0u1 …`.
///
/// # Panics
/// Unless `rows4` and `quad` have the same length, a multiple of 8.
pub(crate) fn interleave_rows4(rows4: &[u8], quad: &mut [u8]) {
    assert!(rows4.len() == quad.len() && rows4.len().is_multiple_of(8));
    let cols = rows4.len() / 4;
    let chunks = cols / 16;
    for c in 0..chunks {
        // SAFETY: 16 bytes at 16c of each row (16c + 16 ≤ cols), 64 bytes at 64c of the block
        // (64c + 64 ≤ 4 · cols).
        unsafe {
            let row = |j: usize| v128_load(rows4.as_ptr().add(j * cols + 16 * c).cast());
            let (r0, r1, r2, r3) = (row(0), row(1), row(2), row(3));
            let a_lo = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(r0, r1);
            let a_hi = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(r0, r1);
            let b_lo = i16x8_shuffle::<0, 8, 1, 9, 2, 10, 3, 11>(r2, r3);
            let b_hi = i16x8_shuffle::<4, 12, 5, 13, 6, 14, 7, 15>(r2, r3);
            let out = quad.as_mut_ptr().add(64 * c);
            v128_store(out.cast(), i32x4_shuffle::<0, 4, 1, 5>(a_lo, b_lo));
            v128_store(out.add(16).cast(), i32x4_shuffle::<2, 6, 3, 7>(a_lo, b_lo));
            v128_store(out.add(32).cast(), i32x4_shuffle::<0, 4, 1, 5>(a_hi, b_hi));
            v128_store(out.add(48).cast(), i32x4_shuffle::<2, 6, 3, 7>(a_hi, b_hi));
        }
    }
    // Columns past the last 16 (fewer than 8 units per row).
    interleave_units_from(rows4, quad, 8 * chunks);
}

/// Hidden-state code pairs for the logits: vector `p` is `(h[2p], h[2p+1])` as i16, four times.
///
/// A `static mut` for the same reasons as the lookup table (`ternary.rs`): one thread, no re-entry.
// SAFETY (the initializer): all-zero bits are a valid v128.
static mut HIDDEN_PAIRS: [v128; 1024] = [unsafe { core::mem::zeroed() }; 1024];

/// `logits[r] = scale · Σ_c head[r][c] · h[c]`; same results as
/// [`int8_logits_twin`]. Four rows at a time from the row-quad layout
/// ([`QuantizedMatrix`]): each dot product advances all four sums, one per lane.
pub(crate) fn int8_logits(head: &QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    let cols = head.cols();
    if !cols.is_multiple_of(8) || cols > 2 * 1024 {
        return int8_logits_twin(head, h, logits);
    }
    let m = absmax(&h[..cols]);
    let Some(quant) = Quantizer::new(m, logits_quant_range(cols)) else {
        degenerate_output(m, logits);
        return;
    };
    // SAFETY: single-threaded, not re-entered; cols / 2 ≤ 1024 checked above.
    let pairs = unsafe { &mut (&mut *addr_of_mut!(HIDDEN_PAIRS))[..cols / 2] };
    let inv = f32x4_splat(quant.inv);
    for (chunk, dst) in h.chunks_exact(8).zip(pairs.chunks_exact_mut(4)) {
        // SAFETY: 8 floats.
        let c = unsafe { codes8(chunk.as_ptr(), inv) };
        // i32 lane q of the codes is the pair (c[2q], c[2q+1]).
        dst[0] = i32x4_shuffle::<0, 0, 0, 0>(c, c);
        dst[1] = i32x4_shuffle::<1, 1, 1, 1>(c, c);
        dst[2] = i32x4_shuffle::<2, 2, 2, 2>(c, c);
        dst[3] = i32x4_shuffle::<3, 3, 3, 3>(c, c);
    }
    let factor = head.scale() * quant.step;
    let rows = head.rows().min(logits.len());
    let quads = rows.min(head.quad_rows()) / 4;
    let (quad_logits, rest) = logits[..rows].split_at_mut(4 * quads);
    let data = &head.data()[..quads * 4 * cols];
    match cols {
        256 => quads_256(data, pairs, factor, quad_logits),
        384 => quads_384(data, pairs, factor, quad_logits),
        512 => quads_512(data, pairs, factor, quad_logits),
        768 => quads_768(data, pairs, factor, quad_logits),
        _ => quads_any(data, pairs, factor, quad_logits),
    }
    // The last rows (fewer than 4, row-major): scalar.
    let code = |c: usize| {
        let pair = pairs[c / 2];
        i32::from(if c.is_multiple_of(2) { i16x8_extract_lane::<0>(pair) } else { i16x8_extract_lane::<1>(pair) })
    };
    for (r, logit) in rest.iter_mut().enumerate() {
        let dot = head.row(4 * quads + r).enumerate().fold(0i32, |acc, (c, w)| acc.wrapping_add(i32::from(w) * code(c)));
        *logit = dot as f32 * factor;
    }
}

/// Scales the four rows' sums and stores them.
#[inline(always)]
fn finish_rows(sums: v128, factor: f32, out: &mut [f32]) {
    let v = f32x4_mul(f32x4_convert_i32x4(sums), f32x4_splat(factor));
    assert!(out.len() >= 4);
    // SAFETY: out has at least 4 elements.
    unsafe { v128_store(out.as_mut_ptr().cast(), v) };
}

/// Row quads of a width known at compile time (`2·$pairs` columns): the hidden pairs stay in
/// wasm locals across all rows and each quad is straight-line code with constant load offsets.
/// Per 8 weights (4 rows × 2 columns): `local.get` (quad), `i16x8.load8x8_s offset=…`,
/// `local.get` (pair), `i32x4.dot_i16x8_s`, `i32x4.add`.
macro_rules! logits_quads {
    ($name:ident, $pairs:literal) => {
        fn $name(data: &[i8], pairs: &[v128], factor: f32, logits: &mut [f32]) {
            const BLOCK: usize = 8 * $pairs;
            let hp: [v128; $pairs] = core::array::from_fn(|p| pairs[p]);
            assert!(data.len() >= logits.len() / 4 * BLOCK);
            let mut quad = data.as_ptr();
            for out in logits.chunks_exact_mut(4) {
                // SAFETY: one block of BLOCK bytes per 4 logits (asserted above).
                let load = |p: usize| unsafe { i16x8_load_extend_i8x8(quad.add(8 * p)) };
                let mut acc = i32x4_dot_i16x8(load(0), hp[0]);
                seq_macro::seq!(P in 1..$pairs {
                    acc = i32x4_add(acc, i32x4_dot_i16x8(load(P), hp[P]));
                });
                finish_rows(acc, factor, out);
                quad = quad.wrapping_add(BLOCK);
            }
        }
    };
}
logits_quads!(quads_256, 128);
logits_quads!(quads_384, 192);
logits_quads!(quads_512, 256);
logits_quads!(quads_768, 384);

fn quads_any(data: &[i8], pairs: &[v128], factor: f32, logits: &mut [f32]) {
    let block = 8 * pairs.len();
    for (quad, out) in data.chunks_exact(block).zip(logits.chunks_exact_mut(4)) {
        let mut acc = i32x4_splat(0);
        for (p, &hp) in pairs.iter().enumerate() {
            // SAFETY: p < pairs.len(): 8 bytes inside this block.
            acc = i32x4_add(acc, i32x4_dot_i16x8(unsafe { i16x8_load_extend_i8x8(quad.as_ptr().add(8 * p)) }, hp));
        }
        finish_rows(acc, factor, out);
    }
}
