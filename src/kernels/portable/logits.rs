//! Twins of the SIMD int8 logits and of the load-time row-quad interleave.
//!
//! The hidden state is quantized to i16 (at most 15 bits, fewer for very wide models so the i32
//! dot cannot overflow) and each int8 row is a dot product in i32.

use crate::kernels::layout::QuantizedMatrix;
use crate::kernels::quant::{Quantizer, absmax, degenerate_output, logits_quant_range};

/// Twin of the SIMD interleave: 4 row-major rows (`rows4`, `4 · cols` bytes) into one row-quad
/// block ([`QuantizedMatrix`]): 2-byte unit `p` of row `j` goes to unit `4p + j`.
pub(crate) fn interleave_rows4_twin(rows4: &[u8], quad: &mut [u8]) {
    interleave_units_from(rows4, quad, 0)
}

/// The twin's step for units `first..` of each row (the SIMD kernel finishes its tail with it).
pub(crate) fn interleave_units_from(rows4: &[u8], quad: &mut [u8], first: usize) {
    let cols = rows4.len() / 4;
    if cols == 0 {
        return;
    }
    for (j, row) in rows4.chunks_exact(cols).enumerate() {
        for (p, pair) in row.chunks_exact(2).enumerate().skip(first) {
            quad[8 * p + 2 * j..][..2].copy_from_slice(pair);
        }
    }
}

/// Quantizes the hidden state for [`int8_logits_twin`] and the SIMD kernel.
fn quantize_hidden(h: &[f32], codes: &mut [i16]) -> Result<Quantizer, f32> {
    let m = absmax(h);
    let quant = Quantizer::new(m, logits_quant_range(h.len())).ok_or(m)?;
    for (c, &v) in codes.iter_mut().zip(h) {
        *c = quant.code(v) as i16;
    }
    Ok(quant)
}

/// Twin of the SIMD logits kernel: `logits[r] = scale · Σ_c head[r][c] · h[c]` (`h` has
/// `head.cols()` values; one logit per row, at most `logits.len()`). The sums are exact in i32, so
/// the row-quad order of the data does not change them.
pub(crate) fn int8_logits_twin(head: &QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    let cols = head.cols();
    let mut codes = vec![0i16; cols];
    let quant = match quantize_hidden(&h[..cols], &mut codes) {
        Ok(q) => q,
        Err(m) => return degenerate_output(m, logits),
    };
    let factor = head.scale() * quant.step;
    let rows = head.rows().min(logits.len());
    let quads = rows.min(head.quad_rows()) / 4;
    let (quad_logits, rest) = logits[..rows].split_at_mut(4 * quads);
    for (block, out) in head.data().chunks_exact(4 * cols).zip(quad_logits.chunks_exact_mut(4)) {
        let mut sums = [0i32; 4];
        for (units, pair) in block.chunks_exact(8).zip(codes.chunks_exact(2)) {
            for (j, sum) in sums.iter_mut().enumerate() {
                *sum += i32::from(units[2 * j]) * i32::from(pair[0]) + i32::from(units[2 * j + 1]) * i32::from(pair[1]);
            }
        }
        for (logit, sum) in out.iter_mut().zip(sums) {
            *logit = sum as f32 * factor;
        }
    }
    for (r, logit) in rest.iter_mut().enumerate() {
        let dot: i32 = head.row(4 * quads + r).zip(&codes).map(|(w, &c)| i32::from(w) * i32::from(c)).sum();
        *logit = dot as f32 * factor;
    }
}
