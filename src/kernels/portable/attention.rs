//! Twin of the SIMD causal attention, f32 throughout, in the SIMD kernel's order of operations.

use crate::kernels::math::exp_twin;

/// Twin of the SIMD attention (which takes `head_dim` a multiple of 4), f32 throughout. The order of the f32
/// operations is the SIMD kernel's: a score is four lane sums `Σ q[4c+l]·k[4c+l]` (in c order),
/// reduced as `(s0 + s2) + (s1 + s3)`, then scaled; softmax weights `e / Σe`; outputs accumulate
/// `p · v` over positions in order.
pub(crate) fn attend_twin(q: &[f32], keys: &[f32], values: &[f32], last: usize, head_dim: usize, scores: &mut [f32], out: &mut [f32]) {
    let width = q.len();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..=last];
    for (h, out_head) in out.chunks_exact_mut(head_dim).enumerate() {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        for (s, score) in scores.iter_mut().enumerate() {
            let k = &keys[s * width + h * head_dim..][..head_dim];
            let mut lanes = [0f32; 4];
            let (q4, k4) = (qh.chunks_exact(4), k.chunks_exact(4));
            let tail = q4.remainder().iter().zip(k4.remainder());
            for (qc, kc) in q4.zip(k4) {
                for l in 0..4 {
                    lanes[l] += qc[l] * kc[l];
                }
            }
            // Widths that are not a multiple of 4 (the SIMD kernel takes only those that are):
            // the last few products join lanes 0.. after the whole chunks.
            for (l, (a, b)) in tail.enumerate() {
                lanes[l] += a * b;
            }
            *score = ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) * scale;
        }
        softmax_twin(scores);
        out_head.fill(0.0);
        for (s, &p) in scores.iter().enumerate() {
            let v = &values[s * width + h * head_dim..][..head_dim];
            for (o, &x) in out_head.iter_mut().zip(v) {
                *o += p * x;
            }
        }
    }
}

/// `x ← exp(x − max) / Σ exp(x − max)`, in the SIMD kernel's order: [`exp_twin`], four lane
/// sums (position `s` in lane `s mod 4`, the last `len mod 4` positions added to lanes 0.. after),
/// reduced as `(s0 + s2) + (s1 + s3)`.
pub(crate) fn softmax_twin(scores: &mut [f32]) {
    let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| if m < v { v } else { m });
    let mut lanes = [0f32; 4];
    for (s, score) in scores.iter_mut().enumerate() {
        *score = exp_twin(*score - max);
        lanes[s % 4] += *score;
    }
    let inv = 1.0 / ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3]));
    for score in scores.iter_mut() {
        *score *= inv;
    }
}
