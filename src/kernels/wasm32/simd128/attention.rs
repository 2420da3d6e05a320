//! Causal attention (f32x4) with its softmax, SIMD128; twin in `portable/attention.rs`.

use core::arch::wasm32::*;

use super::lanes::exp4;
use crate::kernels::math::exp_twin;

/// Causal attention, f32; same results as
/// [`attend_twin`](crate::kernels::portable::attention::attend_twin) (`head_dim` a multiple of 4;
/// `out` no longer than `q`). Per position and 4 dimensions: one key load, `f32x4.mul`, `f32x4.add` for the score;
/// one value load, `f32x4.mul`, `f32x4.add` for the output.
pub(crate) fn attend(q: &[f32], keys: &[f32], values: &[f32], last: usize, head_dim: usize, scores: &mut [f32], out: &mut [f32]) {
    if head_dim == 64 {
        return attend_64(q, keys, values, last, scores, out);
    }
    let width = q.len();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..=last];
    let chunks = head_dim / 4;
    assert!(head_dim.is_multiple_of(4) && out.len() <= width && keys.len() >= (last + 1) * width && values.len() >= (last + 1) * width);
    for (h, out_head) in out.chunks_exact_mut(head_dim).enumerate() {
        // Head h ends within the width (h · head_dim + head_dim ≤ out.len() ≤ width).
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        for (s, score) in scores.iter_mut().enumerate() {
            // SAFETY: position s of head h: head_dim floats inside `keys` (asserted above).
            let k = unsafe { keys.as_ptr().add(s * width + h * head_dim) };
            let mut acc = f32x4_splat(0.0);
            for c in 0..chunks {
                // SAFETY: chunk c < head_dim / 4 of head h, in `qh` and in this position's key.
                unsafe {
                    let prod = f32x4_mul(v128_load(qh.as_ptr().add(4 * c).cast()), v128_load(k.add(4 * c).cast()));
                    acc = f32x4_add(acc, prod);
                }
            }
            let pairs = f32x4_add(acc, i32x4_shuffle::<2, 3, 0, 1>(acc, acc));
            *score = (f32x4_extract_lane::<0>(pairs) + f32x4_extract_lane::<1>(pairs)) * scale;
        }
        softmax(scores);
        out_head.fill(0.0);
        let o = out_head.as_mut_ptr();
        // Four output chunks at a time stay in locals across all positions.
        let mut c = 0;
        while c < chunks {
            let block = (chunks - c).min(4);
            let mut acc = [f32x4_splat(0.0); 4];
            for (s, &p) in scores.iter().enumerate() {
                let pv = f32x4_splat(p);
                // SAFETY: position s of head h inside `values` (asserted above).
                let v = unsafe { values.as_ptr().add(s * width + h * head_dim + 4 * c) };
                for (b, a) in acc.iter_mut().enumerate().take(block) {
                    // SAFETY: chunk c + b < head_dim / 4 of this position's value of head h.
                    *a = f32x4_add(*a, f32x4_mul(pv, unsafe { v128_load(v.add(4 * b).cast()) }));
                }
            }
            for (b, a) in acc.iter().enumerate().take(block) {
                // SAFETY: chunk c + b < chunks of this head's output.
                unsafe { v128_store(o.add(4 * (c + b)).cast(), *a) };
            }
            c += block;
        }
    }
}

/// [`attend`] for 64-wide heads: the query's 16 vectors and the output's 16 accumulators stay in
/// wasm locals across all positions.
fn attend_64(q: &[f32], keys: &[f32], values: &[f32], last: usize, scores: &mut [f32], out: &mut [f32]) {
    const HD: usize = 64;
    let width = q.len();
    let scale = 1.0 / (HD as f32).sqrt();
    let scores = &mut scores[..=last];
    assert!(width.is_multiple_of(HD) && out.len() <= width && keys.len() >= (last + 1) * width && values.len() >= (last + 1) * width);
    for (h, out_head) in out.chunks_exact_mut(HD).enumerate() {
        // SAFETY: head h of q: 64 floats (h · 64 + 64 ≤ out.len() ≤ width, asserted above).
        let qv: [v128; 16] = core::array::from_fn(|c| unsafe { v128_load(q.as_ptr().add(h * HD + 4 * c).cast()) });
        // SAFETY: head h of position 0 (keys holds at least one position of `width`).
        let mut k = unsafe { keys.as_ptr().add(h * HD) };
        for score in scores.iter_mut() {
            let mut acc = f32x4_splat(0.0);
            seq_macro::seq!(C in 0..16 {
                // SAFETY: this position's 64 key floats (asserted above).
                acc = f32x4_add(acc, f32x4_mul(qv[C], unsafe { v128_load(k.add(4 * C).cast()) }));
            });
            let pairs = f32x4_add(acc, i32x4_shuffle::<2, 3, 0, 1>(acc, acc));
            *score = (f32x4_extract_lane::<0>(pairs) + f32x4_extract_lane::<1>(pairs)) * scale;
            k = k.wrapping_add(width);
        }
        softmax(scores);
        let mut acc = [f32x4_splat(0.0); 16];
        // SAFETY: head h of position 0, as for the keys.
        let mut v = unsafe { values.as_ptr().add(h * HD) };
        for &p in scores.iter() {
            let pv = f32x4_splat(p);
            seq_macro::seq!(C in 0..16 {
                // SAFETY: this position's 64 value floats (asserted above).
                acc[C] = f32x4_add(acc[C], f32x4_mul(pv, unsafe { v128_load(v.add(4 * C).cast()) }));
            });
            v = v.wrapping_add(width);
        }
        for (c, a) in acc.iter().enumerate() {
            // SAFETY: 16 chunks of this head's 64 outputs.
            unsafe { v128_store(out_head.as_mut_ptr().add(4 * c).cast(), *a) };
        }
    }
}

/// Softmax in place; same results as [`softmax_twin`](crate::kernels::portable::attention::softmax_twin).
fn softmax(scores: &mut [f32]) {
    let n = scores.len();
    let full = n / 4 * 4;
    let mut m = f32x4_splat(f32::NEG_INFINITY);
    for c in (0..full).step_by(4) {
        // SAFETY: 4 scores at c < full ≤ n.
        m = f32x4_pmax(m, unsafe { v128_load(scores.as_ptr().add(c).cast()) });
    }
    let mut max = f32::NEG_INFINITY;
    for v in [f32x4_extract_lane::<0>(m), f32x4_extract_lane::<1>(m), f32x4_extract_lane::<2>(m), f32x4_extract_lane::<3>(m)]
        .into_iter()
        .chain(scores[full..].iter().copied())
    {
        if max < v {
            max = v;
        }
    }
    let mx = f32x4_splat(max);
    let mut sums = f32x4_splat(0.0);
    for c in (0..full).step_by(4) {
        // SAFETY: 4 scores at c < full ≤ n.
        unsafe {
            let p = scores.as_mut_ptr().add(c);
            let e = exp4(f32x4_sub(v128_load(p.cast()), mx));
            v128_store(p.cast(), e);
            sums = f32x4_add(sums, e);
        }
    }
    let mut lanes = [f32x4_extract_lane::<0>(sums), f32x4_extract_lane::<1>(sums), f32x4_extract_lane::<2>(sums), f32x4_extract_lane::<3>(sums)];
    for (i, score) in scores[full..].iter_mut().enumerate() {
        *score = exp_twin(*score - max);
        lanes[(full + i) % 4] += *score;
    }
    let inv = 1.0 / ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3]));
    let iv = f32x4_splat(inv);
    for c in (0..full).step_by(4) {
        // SAFETY: 4 scores at c < full ≤ n.
        unsafe {
            let p = scores.as_mut_ptr().add(c);
            v128_store(p.cast(), f32x4_mul(v128_load(p.cast()), iv));
        }
    }
    for score in scores[full..].iter_mut() {
        *score *= inv;
    }
}
