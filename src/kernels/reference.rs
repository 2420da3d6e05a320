//! Scalar f32 kernels: the reference math, written for clarity (tests only). The twins in
//! `portable/` must agree with these within stated bounds, so keep them simple and obviously
//! right.

use super::layout::{HeadMixer, QuantizedMatrix, RopeTable};
use super::portable::norm::RMS_EPS;
use crate::octonion::{SIGN, weight_part};

/// A ternary octonion linear layer `R^(8·in_o) → R^(8·out_o)` as dense values.
#[derive(Debug, Clone)]
pub(crate) struct OctonionLinear {
    pub(crate) in_o: usize,
    pub(crate) out_o: usize,
    /// `[8][out_o][in_o]` values in {-1, 0, +1}: part `k`, output row `n`, input column `m`.
    pub(crate) weights: Vec<i8>,
    /// Per-row output scale, shared by all 8 output parts.
    pub(crate) beta: Vec<f32>,
}

impl OctonionLinear {
    /// Row `n` of weight part `k`.
    pub(crate) fn row(&self, k: usize, n: usize) -> &[i8] {
        let start = (k * self.out_o + n) * self.in_o;
        &self.weights[start..start + self.in_o]
    }
}

/// `out = x · rsqrt(mean(x²) + ε) · gain`, in the same operation order as the reference.
pub(crate) fn rms_norm(x: &[f32], gain: &[f32], out: &mut [f32]) {
    let mean_sq = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let inv = 1.0 / (mean_sq + RMS_EPS).sqrt();
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gain) {
        *o = (v * inv) * g;
    }
}

/// Σ x[m] · t[m] for ternary t.
#[inline]
pub(crate) fn dot_ternary(x: &[f32], t: &[i8]) -> f32 {
    x.iter().zip(t).map(|(&a, &w)| a * f32::from(w)).sum()
}

/// `y_i = β ⊙ Σ_j SIGN[i][j] · (x_j · T_{i⊕j}ᵀ)` for one input vector.
///
/// `x` holds the 8 input parts contiguously (`8·in_o`), `y` receives the 8 output parts.
pub(crate) fn octonion_linear(layer: &OctonionLinear, x: &[f32], y: &mut [f32]) {
    let (in_o, out_o) = (layer.in_o, layer.out_o);
    for i in 0..8 {
        for n in 0..out_o {
            let mut acc = 0.0f32;
            for j in 0..8 {
                let part = &x[j * in_o..(j + 1) * in_o];
                acc += SIGN[i][j] * dot_ternary(part, layer.row(weight_part(i, j), n));
            }
            y[i * out_o + n] = layer.beta[n] * acc;
        }
    }
}

/// Rotates adjacent pairs `(2i, 2i+1)` of every head of `x` (all heads of one position).
pub(crate) fn rope(x: &mut [f32], head_dim: usize, position: usize, table: &RopeTable) {
    let (cos, sin) = (table.cos(position), table.sin(position));
    for head in x.chunks_exact_mut(head_dim) {
        for (i, pair) in head.chunks_exact_mut(2).enumerate() {
            let (a, b) = (pair[0], pair[1]);
            pair[0] = a * cos[i] - b * sin[i];
            pair[1] = a * sin[i] + b * cos[i];
        }
    }
}

/// Causal attention of one query position over cached keys/values `0..=last`.
///
/// `q` and `out` are `[n_head · head_dim]`; `keys`/`values` are `[positions][n_head · head_dim]`.
/// `scores` is scratch space of at least `last + 1` entries.
pub(crate) fn attend(q: &[f32], keys: &[f32], values: &[f32], last: usize, head_dim: usize, scores: &mut [f32], out: &mut [f32]) {
    let width = q.len();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..=last];
    for (h, out_head) in out.chunks_exact_mut(head_dim).enumerate() {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        let mut max = f32::NEG_INFINITY;
        for (s, score) in scores.iter_mut().enumerate() {
            let k = &keys[s * width + h * head_dim..][..head_dim];
            *score = qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale;
            max = max.max(*score);
        }
        let mut sum = 0.0f32;
        for score in scores.iter_mut() {
            *score = (*score - max).exp();
            sum += *score;
        }
        out_head.fill(0.0);
        for (s, &p) in scores.iter().enumerate() {
            let v = &values[s * width + h * head_dim..][..head_dim];
            let w = p / sum;
            for (o, &x) in out_head.iter_mut().zip(v) {
                *o += w * x;
            }
        }
    }
}

/// Mixes each group of 8 heads: `z'_i = β ⊙ Σ_j SIGN[i][j] · (z_j · W[i⊕j])`.
///
/// `z` and `out` are all heads of one position, `[n_head · head_dim]`, n_head a multiple of 8.
pub(crate) fn head_mix(mixer: &HeadMixer, z: &[f32], out: &mut [f32]) {
    let hd = mixer.head_dim;
    for (group_in, group_out) in z.chunks_exact(8 * hd).zip(out.chunks_exact_mut(8 * hd)) {
        for i in 0..8 {
            let acc = &mut group_out[i * hd..(i + 1) * hd];
            acc.fill(0.0);
            for j in 0..8 {
                let sign = SIGN[i][j];
                let w = &mixer.weights[weight_part(i, j) * hd * hd..][..hd * hd];
                for (din, &zv) in group_in[j * hd..(j + 1) * hd].iter().enumerate() {
                    let zs = sign * zv;
                    for (a, &wv) in acc.iter_mut().zip(&w[din * hd..(din + 1) * hd]) {
                        *a += zs * wv;
                    }
                }
            }
            for (a, &b) in acc.iter_mut().zip(&mixer.beta) {
                *a *= b;
            }
        }
    }
}

/// SiLU(g) · u, elementwise into `g`.
pub(crate) fn swiglu(g: &mut [f32], u: &[f32]) {
    for (a, &b) in g.iter_mut().zip(u) {
        *a = *a / (1.0 + (-*a).exp()) * b;
    }
}

/// `logits[r] = scale · Σ_c q[r][c] · h[c]` for every row of the int8 head.
pub(crate) fn quantized_logits(head: &QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    for (r, logit) in logits.iter_mut().enumerate() {
        *logit = head.scale() * head.row(r).zip(h).map(|(q, &x)| f32::from(q) * x).sum::<f32>();
    }
}
