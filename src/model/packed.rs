//! Inference layouts built once at load time, and the integer kernels that run on them.
//!
//! Every kernel here exists twice: a plain-Rust *twin* (always compiled; the native path and the
//! reference for the SIMD code) and a wasm SIMD128 version in [`super::simd`]. Both do the same
//! integer arithmetic in a different order, so their results are bit-identical; tests check that
//! on wasm32 and check the twins against the f32 reference kernels within a stated tolerance.
//!
//! **Ternary octonion linear (lookup tables).** Output part `i` of row `r` is
//! `Σ_k SIGN[i][i⊕k] · U_k[r][i⊕k]` with `U_k[r] = Σ_c W_k[r][c] · X[c]`, where `X[c]` holds the
//! 8 input parts of column `c`. Columns are taken 4 at a time: for each group the kernel tabulates
//! `Σ_j d_j · X[c_j]` for all 3⁴ = 81 sign patterns `d ∈ {0, +1, −1}⁴` (8 lanes of i32 each), and
//! each weight row stores, per part `k` and group, the byte offset of its pattern in that table.
//! One lookup then applies 4 ternary weights to all 8 octonion parts (32 multiply-adds) with two
//! vector loads and two integer adds; the table is shared by the 8·out_o rows that read it.
//! Activations are quantized per call to i32 with a range chosen so that no sum can overflow
//! (22 bits for a 512-wide layer), which keeps the arithmetic exact and far finer than f16.
//!
//! **Int8 logits.** The hidden state is quantized to i16 (at most 15 bits, fewer for very wide
//! models so the i32 dot cannot overflow) and each int8 row is a dot product in i32.

use crate::octonion::SIGN;

/// Input columns per lookup.
pub const GROUP: usize = 4;
/// Sign patterns per group: 3^GROUP.
pub const PATTERNS: usize = 81;
/// One table entry: 8 parts × i32.
pub const ENTRY_BYTES: usize = 32;
/// Bytes of one group's table.
pub const GROUP_BYTES: usize = PATTERNS * ENTRY_BYTES;
/// The row loops read lookups in blocks of this many; streams are padded with the zero entry.
pub const LOOKUP_BLOCK: usize = 4;
/// Largest lookup table the engine supports (bytes). Sets the widest layer: 404 groups, i.e.
/// 1616 input columns per part (12928 inputs).
pub const MAX_TABLE_BYTES: usize = 1 << 20;

/// Pattern digit of one weight: 0 → 0, +1 → 1, −1 → 2.
fn digit(w: i8) -> u32 {
    match w {
        1 => 1,
        -1 => 2,
        _ => 0,
    }
}

/// A ternary octonion linear layer repacked for table lookups.
#[derive(Debug, Clone)]
pub struct TernaryLinear {
    pub in_o: usize,
    pub out_o: usize,
    /// Column groups with data (`ceil(in_o / 4)`), i.e. tables built per call.
    pub groups: usize,
    /// Lookups per (row, part): `groups` rounded up to [`LOOKUP_BLOCK`].
    pub stride: usize,
    /// `[out_o][8 parts k][stride]` byte offsets into the table (`group · GROUP_BYTES + pattern · 32`).
    pub offsets: Vec<u32>,
    /// Per-row output scale.
    pub beta: Vec<f32>,
}

impl TernaryLinear {
    /// Packs `[8][out_o][in_o]` ternary values.
    pub fn pack(in_o: usize, out_o: usize, weights: &[i8], beta: Vec<f32>) -> TernaryLinear {
        assert_eq!(weights.len(), 8 * out_o * in_o);
        let groups = in_o.div_ceil(GROUP);
        let stride = groups.div_ceil(LOOKUP_BLOCK) * LOOKUP_BLOCK;
        let mut offsets = vec![0u32; out_o * 8 * stride];
        for r in 0..out_o {
            for k in 0..8 {
                let row = &weights[(k * out_o + r) * in_o..][..in_o];
                let dst = &mut offsets[(r * 8 + k) * stride..][..groups];
                for (g, slot) in dst.iter_mut().enumerate() {
                    let mut pattern = 0u32;
                    for j in (0..GROUP).rev() {
                        pattern = pattern * 3 + row.get(g * GROUP + j).map_or(0, |&w| digit(w));
                    }
                    *slot = (g * GROUP_BYTES) as u32 + pattern * ENTRY_BYTES as u32;
                }
            }
        }
        TernaryLinear { in_o, out_o, groups, stride, offsets, beta }
    }

    pub fn in_dim(&self) -> usize {
        8 * self.in_o
    }
    pub fn out_dim(&self) -> usize {
        8 * self.out_o
    }
    /// Bytes of lookup table one call needs.
    pub fn table_bytes(&self) -> usize {
        self.groups * GROUP_BYTES
    }
    /// Heap bytes of the packed layer.
    pub fn heap_bytes(&self) -> usize {
        4 * (self.offsets.len() + self.beta.len())
    }

    /// The ternary weight of part `k`, row `r`, column `c` (decoded back from the offsets).
    pub fn weight(&self, k: usize, r: usize, c: usize) -> i8 {
        let (g, j) = (c / GROUP, c % GROUP);
        let offset = self.offsets[(r * 8 + k) * self.stride + g] as usize;
        let pattern = (offset - g * GROUP_BYTES) / ENTRY_BYTES;
        match pattern / 3usize.pow(j as u32) % 3 {
            1 => 1,
            2 => -1,
            _ => 0,
        }
    }

    /// The `[8][out_o][in_o]` values, as stored in the file.
    pub fn to_values(&self) -> Vec<i8> {
        let mut out = Vec::with_capacity(8 * self.out_o * self.in_o);
        for k in 0..8 {
            for r in 0..self.out_o {
                out.extend((0..self.in_o).map(|c| self.weight(k, r, c)));
            }
        }
        out
    }

    /// Largest activation code: no output sum (8 parts · groups · 4 columns) can leave i32.
    pub fn quant_range(&self) -> i32 {
        (i32::MAX as usize / (32 * self.groups.max(1))).min(1 << 24) as i32
    }
}

/// How one call quantizes its input vector: `q = round_ties_even(x · inv)`, `x ≈ q · step`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    pub inv: f32,
    pub step: f32,
}

impl Quantizer {
    /// For values whose largest magnitude is `absmax`, onto `[-range, range]`. `None` when the
    /// input is all zeros or not finite (callers handle those without the integer path).
    pub fn new(absmax: f32, range: i32) -> Option<Quantizer> {
        (absmax > 0.0 && absmax.is_finite())
            .then(|| Quantizer { inv: range as f32 / absmax, step: absmax / range as f32 })
    }

    #[inline]
    pub fn code(&self, x: f32) -> i32 {
        (x * self.inv).round_ties_even() as i32
    }
}

/// Largest |x| (NaN propagates as "not finite" through `Quantizer::new`).
pub fn absmax(x: &[f32]) -> f32 {
    let mut m = 0.0f32;
    for &v in x {
        let a = v.abs();
        if !(a <= m) {
            m = if a.is_nan() { f32::INFINITY } else { a };
        }
    }
    m
}

/// Handles the inputs the integer path does not: all-zero (output 0) or non-finite (output NaN).
pub(super) fn degenerate_output(absmax: f32, y: &mut [f32]) {
    y.fill(if absmax == 0.0 { 0.0 } else { f32::NAN });
}

/// Scratch space of one lookup table (i32 lanes, 8 per entry).
pub fn table_len_i32(layer: &TernaryLinear) -> usize {
    layer.table_bytes() / 4
}

/// Twin of the SIMD kernel: `y = layer(x)`, `x` as `[8][in_o]`, `y` as `[8][out_o]`.
/// `table` must hold at least [`table_len_i32`] values.
pub fn ternary_linear_twin(layer: &TernaryLinear, x: &[f32], y: &mut [f32], table: &mut [i32]) {
    ternary_linears_twin(&mut [(layer, y)], x, table)
}

/// Twin of the SIMD kernel for several layers of one input width applied to the same `x` (one
/// quantization, one table).
pub fn ternary_linears_twin(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32], table: &mut [i32]) {
    let Some((first, _)) = layers.first() else { return };
    let in_o = first.in_o;
    assert!(layers.iter().all(|(l, _)| l.in_o == in_o));
    let m = absmax(&x[..8 * in_o]);
    let Some(quant) = Quantizer::new(m, first.quant_range()) else {
        for (layer, y) in layers.iter_mut() {
            degenerate_output(m, &mut y[..8 * layer.out_o]);
        }
        return;
    };
    build_table_twin(first, x, quant, table);
    for (layer, y) in layers.iter_mut() {
        rows_twin(layer, quant, y, table);
    }
}

fn rows_twin(layer: &TernaryLinear, quant: Quantizer, y: &mut [f32], table: &[i32]) {
    let out_o = layer.out_o;
    for r in 0..out_o {
        let mut out = [0i32; 8];
        for k in 0..8 {
            let mut u = [0i32; 8];
            for &offset in &layer.offsets[(r * 8 + k) * layer.stride..][..layer.stride] {
                let entry = &table[offset as usize / 4..][..8];
                for (a, &b) in u.iter_mut().zip(entry) {
                    *a = a.wrapping_add(b);
                }
            }
            for (i, o) in out.iter_mut().enumerate() {
                let v = u[i ^ k];
                *o = o.wrapping_add(if SIGN[i][i ^ k] > 0.0 { v } else { v.wrapping_neg() });
            }
        }
        let factor = layer.beta[r] * quant.step;
        for (i, &o) in out.iter().enumerate() {
            y[i * out_o + r] = o as f32 * factor;
        }
    }
}

/// Fills the lookup table for quantized `x` (shared layout with the SIMD kernel).
pub fn build_table_twin(layer: &TernaryLinear, x: &[f32], quant: Quantizer, table: &mut [i32]) {
    let in_o = layer.in_o;
    for g in 0..layer.groups {
        let t = &mut table[g * GROUP_BYTES / 4..][..GROUP_BYTES / 4];
        t[..8].fill(0);
        let mut filled = 1;
        for j in 0..GROUP {
            let c = g * GROUP + j;
            let column: [i32; 8] = std::array::from_fn(|p| if c < in_o { quant.code(x[p * in_o + c]) } else { 0 });
            for e in 0..filled {
                for p in 0..8 {
                    let base = t[e * 8 + p];
                    t[(e + filled) * 8 + p] = base.wrapping_add(column[p]);
                    t[(e + 2 * filled) * 8 + p] = base.wrapping_sub(column[p]);
                }
            }
            filled *= 3;
        }
    }
}

/// Twin of the SIMD interleave: 4 row-major rows (`rows4`, `4 · cols` bytes) into one row-quad
/// block ([`super::QuantizedMatrix`]): 2-byte unit `p` of row `j` goes to unit `4p + j`.
pub fn interleave_rows4_twin(rows4: &[u8], quad: &mut [u8]) {
    interleave_units_from(rows4, quad, 0)
}

/// The twin's step for units `first..` of each row (the SIMD kernel finishes its tail with it).
pub(super) fn interleave_units_from(rows4: &[u8], quad: &mut [u8], first: usize) {
    let cols = rows4.len() / 4;
    for (j, row) in rows4.chunks_exact(cols).enumerate() {
        for (p, pair) in row.chunks_exact(2).enumerate().skip(first) {
            quad[8 * p + 2 * j..][..2].copy_from_slice(pair);
        }
    }
}

/// [`interleave_rows4_twin`] with the fastest kernel of this build (run once per 4 vocabulary
/// rows at load time).
pub fn interleave_rows4(rows4: &[u8], quad: &mut [u8]) {
    assert!(rows4.len() == quad.len() && rows4.len() % 8 == 0);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::interleave_rows4(rows4, quad);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    interleave_rows4_twin(rows4, quad)
}

/// Largest hidden-state code for int8 logits over `cols` columns: the i32 dot cannot overflow.
pub fn logits_quant_range(cols: usize) -> i32 {
    (i32::MAX as usize / (127 * cols.max(1))).min(i16::MAX as usize) as i32
}

/// Quantizes the hidden state for [`int8_logits_twin`] and the SIMD kernel.
pub fn quantize_hidden(h: &[f32], codes: &mut [i16]) -> Result<Quantizer, f32> {
    let m = absmax(h);
    let quant = Quantizer::new(m, logits_quant_range(h.len())).ok_or(m)?;
    for (c, &v) in codes.iter_mut().zip(h) {
        *c = quant.code(v) as i16;
    }
    Ok(quant)
}

/// Twin of the SIMD logits kernel: `logits[r] = scale · Σ_c head[r][c] · h[c]` (`h` has
/// `head.cols` values; one logit per row, at most `logits.len()`). The sums are exact in i32, so
/// the row-quad order of the data does not change them.
pub fn int8_logits_twin(head: &super::QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    let cols = head.cols;
    let mut codes = vec![0i16; cols];
    let quant = match quantize_hidden(&h[..cols], &mut codes) {
        Ok(q) => q,
        Err(m) => return degenerate_output(m, logits),
    };
    let factor = head.scale * quant.step;
    let rows = head.rows.min(logits.len());
    let quads = rows.min(head.quad_rows()) / 4;
    let (quad_logits, rest) = logits[..rows].split_at_mut(4 * quads);
    for (block, out) in head.data.chunks_exact(4 * cols).zip(quad_logits.chunks_exact_mut(4)) {
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

// ---- head mixer -------------------------------------------------------------------------------

/// Weight codes of the head mixer, 14-bit activations times 14-bit weights: 8 products (four
/// `i32x4.dot_i16x8_s`) stay inside one i32 lane (8 · 16383² < 2³¹) before the sum moves to f32.
pub const MIXER_WEIGHT_RANGE: i32 = 16383;
pub const MIXER_INPUT_RANGE: i32 = 16383;
/// Inputs per exact i32 block of the mixer (four dot products of 8).
pub const MIXER_BLOCK: usize = 32;

/// The head mixer repacked for i16 dot products: per weight part `k` and output `o`, the row
/// `W[k][·][o]` (over inputs) as i16 codes with its own scale.
#[derive(Debug, Clone)]
pub struct PackedMixer {
    pub head_dim: usize,
    /// `[8 k][head_dim o][head_dim in]` codes.
    pub codes: Vec<i16>,
    /// `[head_dim o][8 k]` scales: `W[k][in][o] ≈ codes[k][o][in] · scales[o][k]`.
    pub scales: Vec<f32>,
    pub beta: Vec<f32>,
}

impl PackedMixer {
    pub fn pack(mixer: &super::HeadMixer) -> PackedMixer {
        let hd = mixer.head_dim;
        let mut codes = vec![0i16; 8 * hd * hd];
        let mut scales = vec![0f32; hd * 8];
        for k in 0..8 {
            let w = &mixer.weights[k * hd * hd..][..hd * hd];
            for o in 0..hd {
                let m = (0..hd).map(|i| w[i * hd + o].abs()).fold(0.0f32, f32::max);
                let scale = if m > 0.0 { m / MIXER_WEIGHT_RANGE as f32 } else { 1.0 };
                scales[o * 8 + k] = scale;
                for i in 0..hd {
                    codes[(k * hd + o) * hd + i] = (w[i * hd + o] / scale).round_ties_even() as i16;
                }
            }
        }
        PackedMixer { head_dim: hd, codes, scales, beta: mixer.beta.clone() }
    }

    /// The f32 weights the codes stand for (for the reference kernel).
    pub fn to_reference(&self) -> super::HeadMixer {
        let hd = self.head_dim;
        let mut weights = vec![0f32; 8 * hd * hd];
        for k in 0..8 {
            for o in 0..hd {
                for i in 0..hd {
                    weights[k * hd * hd + i * hd + o] =
                        f32::from(self.codes[(k * hd + o) * hd + i]) * self.scales[o * 8 + k];
                }
            }
        }
        super::HeadMixer { head_dim: hd, weights, beta: self.beta.clone() }
    }

    pub fn heap_bytes(&self) -> usize {
        2 * self.codes.len() + 4 * (self.scales.len() + self.beta.len())
    }
}

/// Twin of the SIMD mixer: `z` and `out` are all heads of one position (`n_head · head_dim`,
/// `head_dim` a multiple of 16).
///
/// Per group of 8 heads, `z` is quantized to i16. For output head `i`, column `o` and input head
/// `j` (weight part `k = i ⊕ j`), the inputs go in blocks of 32 (four SIMD dot products): lane
/// `l` of a block's exact i32 sum holds inputs `n` with `(n mod 8) / 2 = l`. The blocks' sums are added
/// in f32 in order, scaled by the row's scale, added to (or, for a negative octonion sign,
/// subtracted from) the f32 accumulator; the lanes end as `(a0 + a2) + (a1 + a3)`.
pub fn head_mix_twin(mixer: &PackedMixer, z: &[f32], out: &mut [f32]) {
    let hd = mixer.head_dim;
    let mut codes = vec![0i16; 8 * hd];
    for (group_in, group_out) in z.chunks_exact(8 * hd).zip(out.chunks_exact_mut(8 * hd)) {
        let m = absmax(group_in);
        let Some(quant) = Quantizer::new(m, MIXER_INPUT_RANGE) else {
            degenerate_output(m, group_out);
            continue;
        };
        for (c, &v) in codes.iter_mut().zip(group_in) {
            *c = quant.code(v) as i16;
        }
        for i in 0..8 {
            for o in 0..hd {
                let mut acc = [0f32; 4];
                for j in 0..8 {
                    let k = i ^ j;
                    let row = &mixer.codes[(k * hd + o) * hd..][..hd];
                    let zj = &codes[j * hd..][..hd];
                    let mut t = [0f32; 4];
                    for (block, (wb, zb)) in row.chunks(MIXER_BLOCK).zip(zj.chunks(MIXER_BLOCK)).enumerate() {
                        let mut lanes = [0i32; 4];
                        for (n, (&w, &c)) in wb.iter().zip(zb).enumerate() {
                            lanes[(n % 8) / 2] += i32::from(w) * i32::from(c);
                        }
                        for l in 0..4 {
                            t[l] = if block == 0 { lanes[l] as f32 } else { t[l] + lanes[l] as f32 };
                        }
                    }
                    let sc = mixer.scales[o * 8 + k];
                    for l in 0..4 {
                        let u = t[l] * sc;
                        acc[l] = if SIGN[i][j] > 0.0 { acc[l] + u } else { acc[l] - u };
                    }
                }
                let sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
                group_out[i * hd + o] = sum * (mixer.beta[o] * quant.step);
            }
        }
    }
}

/// The head mixer with the fastest kernel of this build.
pub fn head_mix(mixer: &PackedMixer, z: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if mixer.head_dim == 64 {
        return super::simd::head_mix_64(mixer, z, out);
    }
    head_mix_twin(mixer, z, out)
}

// ---- attention ----------------------------------------------------------------------------------

/// Twin of the SIMD attention (`head_dim` a multiple of 4), f32 throughout. The order of the f32
/// operations is the SIMD kernel's: a score is four lane sums `Σ q[4c+l]·k[4c+l]` (in c order),
/// reduced as `(s0 + s2) + (s1 + s3)`, then scaled; softmax weights `e / Σe`; outputs accumulate
/// `p · v` over positions in order.
pub fn attend_twin(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    last: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    let width = q.len();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..=last];
    for (h, out_head) in out.chunks_exact_mut(head_dim).enumerate() {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        for (s, score) in scores.iter_mut().enumerate() {
            let k = &keys[s * width + h * head_dim..][..head_dim];
            let mut lanes = [0f32; 4];
            for (qc, kc) in qh.chunks_exact(4).zip(k.chunks_exact(4)) {
                for l in 0..4 {
                    lanes[l] += qc[l] * kc[l];
                }
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
pub fn softmax_twin(scores: &mut [f32]) {
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

/// Causal attention of one position with the fastest kernel of this build.
pub fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    last: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if head_dim % 4 == 0 {
        return super::simd::attend(q, keys, values, last, head_dim, scores, out);
    }
    attend_twin(q, keys, values, last, head_dim, scores, out)
}

// ---- norm, RoPE, residual -------------------------------------------------------------------------

/// Twin of the SIMD RMSNorm: `out = (x · inv) · gain` with `inv = 1 / sqrt(Σx²/n + ε)`, the
/// squares summed in four lanes (element `m` in lane `m mod 4`, the last `n mod 4` added to lanes
/// 0‥ after) and reduced as `(s0 + s2) + (s1 + s3)`.
pub fn rms_norm_twin(x: &[f32], gain: &[f32], out: &mut [f32]) {
    let mut lanes = [0f32; 4];
    for (m, &v) in x.iter().enumerate() {
        lanes[m % 4] += v * v;
    }
    let inv = rms_inverse(lanes, x.len());
    for ((o, &v), &g) in out.iter_mut().zip(x).zip(gain) {
        *o = (v * inv) * g;
    }
}

/// `1 / sqrt(mean + ε)` from the four lane sums of squares.
pub(super) fn rms_inverse(lanes: [f32; 4], n: usize) -> f32 {
    let mean_sq = ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3])) / n as f32;
    1.0 / (mean_sq + super::kernels::RMS_EPS).sqrt()
}

/// RMSNorm with the fastest kernel of this build.
pub fn rms_norm(x: &[f32], gain: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::rms_norm(x, gain, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    rms_norm_twin(x, gain, out)
}

/// RoPE with the fastest kernel of this build; the twin is the reference
/// [`super::kernels::rope`] itself (the SIMD version does the same f32 operations per element).
pub fn rope(x: &mut [f32], head_dim: usize, position: usize, table: &super::RopeTable) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if head_dim % 8 == 0 {
        return super::simd::rope(x, head_dim, position, table);
    }
    super::kernels::rope(x, head_dim, position, table)
}

/// `x += y` (the residual connections).
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::add_in_place(x, y);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

// ---- SwiGLU ---------------------------------------------------------------------------------------

/// `exp` for the SwiGLU gate, written as explicit f32 steps so the SIMD kernel can repeat them
/// exactly: clamp to [-87, 88], `n = round(x·log2 e)`, `r = x − n·ln 2` (two parts), a degree-6
/// Taylor polynomial on |r| ≤ ln2/2 (relative error ≤ 2e-7), times 2^n built in the exponent bits.
pub fn exp_twin(x: f32) -> f32 {
    // The comparisons of wasm's f32x4.pmax/pmin, so NaN clamps the same way in both kernels.
    let x = if EXP_MIN < x { x } else { EXP_MIN };
    let x = if x < EXP_MAX { x } else { EXP_MAX };
    let n = (x * std::f32::consts::LOG2_E).round_ties_even();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let mut p = EXP_POLY[6];
    for &c in EXP_POLY[..6].iter().rev() {
        p = p * r + c;
    }
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

pub const EXP_MIN: f32 = -87.0;
pub const EXP_MAX: f32 = 88.0;
pub const LN2_HI: f32 = 0.693_145_75;
pub const LN2_LO: f32 = 1.428_606_8e-6;
pub const EXP_POLY: [f32; 7] = [1.0, 1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0];

/// Twin of the SIMD SwiGLU: `g ← g / (1 + exp(−g)) · u`.
pub fn swiglu_twin(g: &mut [f32], u: &[f32]) {
    for (a, &b) in g.iter_mut().zip(u) {
        *a = *a / (1.0 + exp_twin(-*a)) * b;
    }
}

/// SwiGLU with the fastest kernel of this build.
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::swiglu(g, u);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    swiglu_twin(g, u)
}

/// Index of the largest logit with the fastest kernel of this build (see
/// [`crate::sampling::argmax`], its twin).
pub fn argmax(logits: &[f32]) -> Option<usize> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::argmax(logits);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    crate::sampling::argmax(logits)
}

// ---- sampling weights ---------------------------------------------------------------------------

/// Scaled logits this far below the largest get weight 0 (each would carry < e^-40 of the mass).
pub const SAMPLING_CUTOFF: f32 = 40.0;

/// The largest `v / t` over the logits above −∞ (NaN and −∞ are never sampled), or `None` if
/// there is none. Order-independent: any order of comparisons finds the same value (±0 aside,
/// which gives the same weights).
pub fn max_scaled_twin(logits: &[f32], t: f32) -> Option<f32> {
    let mut max = f32::NEG_INFINITY;
    for &v in logits {
        let s = if v > f32::NEG_INFINITY { v / t } else { f32::NEG_INFINITY };
        max = if max < s { s } else { max };
    }
    (max > f32::NEG_INFINITY).then_some(max)
}

/// Twin of the SIMD sampling weights: `w = exp(v/t − max)` (by [`exp_twin`]) where
/// `v/t ≥ max − SAMPLING_CUTOFF`, else 0; when `max` is +∞ each +∞ logit gets weight 1 and the
/// rest 0. `weights` has one entry per logit.
pub fn sampling_weights_twin(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    let floor = max - SAMPLING_CUTOFF;
    for (w, &v) in weights.iter_mut().zip(logits) {
        let s = v / t;
        let d = s - max;
        *w = if !(s >= floor) {
            0.0
        } else if d.is_nan() {
            1.0
        } else {
            exp_twin(d)
        };
    }
}

/// [`max_scaled_twin`] with the fastest kernel of this build.
pub fn max_scaled(logits: &[f32], t: f32) -> Option<f32> {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::max_scaled(logits, t);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    max_scaled_twin(logits, t)
}

/// [`sampling_weights_twin`] with the fastest kernel of this build.
pub fn sampling_weights(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    assert_eq!(logits.len(), weights.len());
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    return super::simd::sampling_weights(logits, t, max, weights);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    sampling_weights_twin(logits, t, max, weights)
}

// ---- dispatch: the SIMD kernels on wasm32 with simd128, the twins elsewhere ------------------

/// `y = layer(x)` with the fastest kernel of this build.
pub fn ternary_linear(layer: &TernaryLinear, x: &[f32], y: &mut [f32]) {
    ternary_linears(&mut [(layer, y)], x)
}

/// Several layers of one input width on the same `x` (one quantization and table for all).
pub fn ternary_linears(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    super::simd::ternary_linears(layers, x);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    TABLE.with_borrow_mut(|table| {
        let needed = layers.first().map_or(0, |(l, _)| table_len_i32(l));
        if table.len() < needed {
            table.resize(needed, 0);
        }
        ternary_linears_twin(layers, x, table)
    });
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
thread_local! {
    static TABLE: std::cell::RefCell<Vec<i32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Logits of the int8 head with the fastest kernel of this build.
pub fn int8_logits(head: &super::QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    super::simd::int8_logits(head, h, logits);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    int8_logits_twin(head, h, logits);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::OctonionLinear;
    use crate::model::kernels;
    use rand_chacha::ChaCha8Rng;
    use rand_core::{RngCore, SeedableRng};

    fn random_ternary(rng: &mut ChaCha8Rng, n: usize) -> Vec<i8> {
        (0..n).map(|_| (rng.next_u32() % 3) as i8 - 1).collect()
    }

    fn random_f32(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| ((rng.next_u32() as f32 / u32::MAX as f32) * 2.0 - 1.0) * scale).collect()
    }

    #[test]
    fn packing_round_trips_every_weight() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for (in_o, out_o) in [(64, 64), (171, 5), (3, 7), (9, 1)] {
            let w = random_ternary(&mut rng, 8 * in_o * out_o);
            let packed = TernaryLinear::pack(in_o, out_o, &w, vec![1.0; out_o]);
            assert_eq!(packed.to_values(), w, "in_o {in_o} out_o {out_o}");
            // Padding lookups read the zero entry.
            assert!(packed.offsets.len() == out_o * 8 * packed.stride);
        }
    }

    /// The integer path against the f32 reference: the only error is activation rounding
    /// (≤ step/2 per input), so |Δ| ≤ β · step/2 · (number of nonzero weights in the row).
    #[test]
    fn ternary_twin_matches_f32_reference_within_rounding() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for (in_o, out_o) in [(64, 64), (64, 171), (171, 64), (5, 3)] {
            let w = random_ternary(&mut rng, 8 * in_o * out_o);
            let beta = random_f32(&mut rng, out_o, 0.5);
            let x = random_f32(&mut rng, 8 * in_o, 3.0);
            let reference = OctonionLinear { in_o, out_o, weights: w.clone(), beta: beta.clone() };
            let mut expected = vec![0.0; 8 * out_o];
            kernels::octonion_linear(&reference, &x, &mut expected);
            let packed = TernaryLinear::pack(in_o, out_o, &w, beta.clone());
            let mut table = vec![0; table_len_i32(&packed)];
            let mut got = vec![0.0; 8 * out_o];
            ternary_linear_twin(&packed, &x, &mut got, &mut table);
            let step = absmax(&x) / packed.quant_range() as f32;
            for (idx, (a, b)) in got.iter().zip(&expected).enumerate() {
                let r = idx % out_o;
                let bound = beta[r].abs() * step * (8 * in_o) as f32 + 1e-5 * b.abs() + 1e-6;
                assert!((a - b).abs() <= bound, "in_o {in_o} out_o {out_o} [{idx}]: {a} vs {b} (bound {bound})");
            }
        }
    }

    #[test]
    fn shared_table_gives_each_layer_its_own_result() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let a = TernaryLinear::pack(64, 64, &random_ternary(&mut rng, 8 * 64 * 64), random_f32(&mut rng, 64, 1.0));
        let b = TernaryLinear::pack(64, 171, &random_ternary(&mut rng, 8 * 64 * 171), random_f32(&mut rng, 171, 1.0));
        let x = random_f32(&mut rng, 512, 2.0);
        let mut table = vec![0; table_len_i32(&a)];
        let (mut ya, mut yb) = (vec![0.0; 512], vec![0.0; 8 * 171]);
        ternary_linear_twin(&a, &x, &mut ya, &mut table);
        ternary_linear_twin(&b, &x, &mut yb, &mut table);
        let (mut ya2, mut yb2) = (vec![0.0; 512], vec![0.0; 8 * 171]);
        ternary_linears_twin(&mut [(&a, &mut ya2), (&b, &mut yb2)], &x, &mut table);
        assert_eq!((ya, yb), (ya2, yb2));
    }

    #[test]
    fn ternary_twin_handles_zero_and_non_finite_input() {
        let w = vec![1i8; 8 * 4 * 2];
        let packed = TernaryLinear::pack(4, 2, &w, vec![1.0; 2]);
        let mut table = vec![0; table_len_i32(&packed)];
        let mut y = vec![7.0; 16];
        ternary_linear_twin(&packed, &[0.0; 32], &mut y, &mut table);
        assert!(y.iter().all(|&v| v == 0.0));
        let mut x = vec![1.0; 32];
        x[3] = f32::INFINITY;
        ternary_linear_twin(&packed, &x, &mut y, &mut table);
        assert!(y.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn mixer_twin_matches_f32_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for (hd, heads) in [(64, 8), (16, 16), (32, 8), (6, 8), (20, 16)] {
            let weights = random_f32(&mut rng, 8 * hd * hd, 0.2);
            let beta = random_f32(&mut rng, hd, 1.0);
            let z = random_f32(&mut rng, heads * hd, 2.0);
            let mixer = crate::model::HeadMixer { head_dim: hd, weights, beta: beta.clone() };
            let packed = PackedMixer::pack(&mixer);
            // Weight rounding is at most half a code step of each row.
            for k in 0..8 {
                for o in 0..hd {
                    let sc = packed.scales[o * 8 + k];
                    for i in 0..hd {
                        let w = mixer.weights[k * hd * hd + i * hd + o];
                        assert!(
                            (f32::from(packed.codes[(k * hd + o) * hd + i]) * sc - w).abs()
                                <= sc * 0.51 + w.abs() * 1e-6
                        );
                    }
                }
            }
            // Against the weights the codes stand for, so only activation rounding and f32 order remain.
            let reference = packed.to_reference();
            let mut expected = vec![0.0; heads * hd];
            kernels::head_mix(&reference, &z, &mut expected);
            let mut got = vec![0.0; heads * hd];
            head_mix_twin(&packed, &z, &mut got);
            let step = absmax(&z) / MIXER_INPUT_RANGE as f32;
            for (n, (a, b)) in got.iter().zip(&expected).enumerate() {
                let o = n % hd;
                let wmax = (0..8).map(|k| packed.scales[o * 8 + k]).fold(0.0, f32::max) * MIXER_WEIGHT_RANGE as f32;
                let bound = beta[o].abs() * (step / 2.0 * wmax * (8 * hd) as f32) + 1e-5 * b.abs() + 1e-6;
                assert!((a - b).abs() <= bound, "hd {hd} [{n}]: {a} vs {b} (bound {bound})");
            }
        }
    }

    /// The SIMD kernels against their twins, bit for bit (run by `scripts/test.sh` on
    /// wasm32-wasip1 with simd128 in wasmtime).
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    #[test]
    fn simd_kernels_equal_their_twins() {
        use crate::model::simd;
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for (in_o, out_o) in [(64, 64), (64, 171), (171, 64), (5, 3), (300, 2)] {
            let w = random_ternary(&mut rng, 8 * in_o * out_o);
            let beta = random_f32(&mut rng, out_o, 0.5);
            let packed = TernaryLinear::pack(in_o, out_o, &w, beta);
            for scale in [3.0, 1e-3, 0.0] {
                let x = random_f32(&mut rng, 8 * in_o, scale);
                let mut table = vec![0; table_len_i32(&packed)];
                let mut twin = vec![0.0; 8 * out_o];
                ternary_linear_twin(&packed, &x, &mut twin, &mut table);
                let mut fast = vec![1.0; 8 * out_o];
                simd::ternary_linear(&packed, &x, &mut fast);
                assert_eq!(fast, twin, "ternary in_o {in_o} out_o {out_o} scale {scale}");
            }
        }
        {
            let a = TernaryLinear::pack(64, 64, &random_ternary(&mut rng, 8 * 64 * 64), random_f32(&mut rng, 64, 1.0));
            let b =
                TernaryLinear::pack(64, 171, &random_ternary(&mut rng, 8 * 64 * 171), random_f32(&mut rng, 171, 1.0));
            let x = random_f32(&mut rng, 512, 2.0);
            let mut table = vec![0; table_len_i32(&a)];
            let (mut ya, mut yb) = (vec![0.0; 512], vec![0.0; 8 * 171]);
            ternary_linears_twin(&mut [(&a, &mut ya), (&b, &mut yb)], &x, &mut table);
            let (mut fa, mut fb) = (vec![1.0; 512], vec![1.0; 8 * 171]);
            simd::ternary_linears(&mut [(&a, &mut fa), (&b, &mut fb)], &x);
            assert_eq!((fa, fb), (ya, yb), "shared table");
        }
        for heads in [8, 16] {
            let weights = random_f32(&mut rng, 8 * 64 * 64, 0.2);
            let beta = random_f32(&mut rng, 64, 1.0);
            let packed = PackedMixer::pack(&crate::model::HeadMixer { head_dim: 64, weights, beta });
            for scale in [2.0, 0.0] {
                let z = random_f32(&mut rng, heads * 64, scale);
                let mut twin = vec![0.0; heads * 64];
                head_mix_twin(&packed, &z, &mut twin);
                let mut fast = vec![1.0; heads * 64];
                simd::head_mix_64(&packed, &z, &mut fast);
                assert_eq!(fast, twin, "mixer heads {heads} scale {scale}");
            }
        }
        for (hd, heads, positions) in [(64, 8, 70), (8, 2, 1), (12, 4, 33)] {
            let width = hd * heads;
            let q = random_f32(&mut rng, width, 1.0);
            let keys = random_f32(&mut rng, positions * width, 1.0);
            let values = random_f32(&mut rng, positions * width, 1.0);
            let (mut s1, mut s2) = (vec![0.0; positions], vec![0.0; positions]);
            let (mut twin, mut fast) = (vec![0.0; width], vec![1.0; width]);
            attend_twin(&q, &keys, &values, positions - 1, hd, &mut s1, &mut twin);
            simd::attend(&q, &keys, &values, positions - 1, hd, &mut s2, &mut fast);
            assert_eq!(fast, twin, "attention hd {hd}");
        }
        for n in [1368, 7, 4] {
            let g = random_f32(&mut rng, n, 40.0);
            let u = random_f32(&mut rng, n, 2.0);
            let (mut twin, mut fast) = (g.clone(), g.clone());
            swiglu_twin(&mut twin, &u);
            simd::swiglu(&mut fast, &u);
            assert_eq!(fast, twin, "swiglu n {n}");
        }
        for n in [512, 7, 1, 1368] {
            let x = random_f32(&mut rng, n, 3.0);
            let gain = random_f32(&mut rng, n, 2.0);
            let (mut twin, mut fast) = (vec![0.0; n], vec![1.0; n]);
            rms_norm_twin(&x, &gain, &mut twin);
            simd::rms_norm(&x, &gain, &mut fast);
            assert_eq!(fast, twin, "rms_norm n {n}");
            let mut sum = x.clone();
            simd::add_in_place(&mut sum, &gain);
            assert!(sum.iter().zip(x.iter().zip(&gain)).all(|(s, (a, b))| *s == a + b), "add n {n}");
        }
        for (head_dim, heads) in [(64, 8), (8, 3), (16, 2)] {
            let positions = 5;
            let half = head_dim / 2;
            let angles = random_f32(&mut rng, positions * half, 3.0);
            let table = crate::model::RopeTable {
                half,
                positions,
                cos: angles.iter().map(|a| a.cos()).collect(),
                sin: angles.iter().map(|a| a.sin()).collect(),
            };
            for position in [0, 4] {
                let x = random_f32(&mut rng, head_dim * heads, 2.0);
                let (mut reference, mut fast) = (x.clone(), x.clone());
                kernels::rope(&mut reference, head_dim, position, &table);
                simd::rope(&mut fast, head_dim, position, &table);
                assert_eq!(fast, reference, "rope head_dim {head_dim} position {position}");
            }
        }
        for n in [50257, 7, 1, 0] {
            for t in [0.8, 1e-3, 2.5] {
                let mut v = random_f32(&mut rng, n, 30.0);
                for (i, special) in [f32::NAN, f32::NEG_INFINITY, 0.0, -0.0].into_iter().enumerate() {
                    if i < n {
                        v[i * 3 % n] = special;
                    }
                }
                let max = max_scaled_twin(&v, t);
                assert_eq!(simd::max_scaled(&v, t), max, "max_scaled n {n} t {t}");
                if let Some(max) = max {
                    let mut twin = vec![0.0; n];
                    sampling_weights_twin(&v, t, max, &mut twin);
                    let mut fast = vec![7.0; n];
                    simd::sampling_weights(&v, t, max, &mut fast);
                    assert!(fast.iter().zip(&twin).all(|(a, b)| a.to_bits() == b.to_bits()), "weights n {n} t {t}");
                }
                if n > 2 {
                    v[n - 2] = f32::INFINITY;
                    v[1] = f32::INFINITY;
                    let max = max_scaled_twin(&v, t);
                    assert_eq!(simd::max_scaled(&v, t), max);
                    let mut twin = vec![0.0; n];
                    sampling_weights_twin(&v, t, max.unwrap(), &mut twin);
                    let mut fast = vec![7.0; n];
                    simd::sampling_weights(&v, t, max.unwrap(), &mut fast);
                    assert_eq!(fast, twin, "weights with +inf n {n} t {t}");
                }
            }

            let mut v = random_f32(&mut rng, n, 5.0);
            assert_eq!(simd::argmax(&v), crate::sampling::argmax(&v), "argmax n {n}");
            if n > 5 {
                let m = v.iter().cloned().fold(f32::MIN, f32::max);
                v[n - 1] = m;
                v[3] = f32::NAN;
                assert_eq!(simd::argmax(&v), crate::sampling::argmax(&v), "argmax ties n {n}");
                v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                assert_eq!(simd::argmax(&v), crate::sampling::argmax(&v), "argmax -inf n {n}");
            }
        }
        for cols in [8, 16, 24, 512, 520] {
            let rows4: Vec<u8> = (0..4 * cols).map(|_| rng.next_u32() as u8).collect();
            let mut twin = vec![0u8; 4 * cols];
            interleave_rows4_twin(&rows4, &mut twin);
            let mut fast = vec![1u8; 4 * cols];
            simd::interleave_rows4(&rows4, &mut fast);
            assert_eq!(fast, twin, "interleave cols {cols}");
        }
        for cols in [256, 384, 512, 768, 8, 1000] {
            for rows in [1, 4, 37] {
                let data: Vec<i8> = (0..rows * cols).map(|_| ((rng.next_u32() % 255) as i32 - 127) as i8).collect();
                let head = crate::model::QuantizedMatrix::from_rows(rows, cols, 0.02, &data);
                let h = random_f32(&mut rng, cols, 2.0);
                let mut twin = vec![0.0; rows];
                int8_logits_twin(&head, &h, &mut twin);
                let mut fast = vec![1.0; rows];
                simd::int8_logits(&head, &h, &mut fast);
                assert_eq!(fast, twin, "logits cols {cols} rows {rows}");
            }
        }
    }

    #[test]
    fn attention_twin_matches_f32_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        for (hd, heads, positions) in [(64, 8, 70), (8, 2, 1), (12, 4, 33)] {
            let width = hd * heads;
            let q = random_f32(&mut rng, width, 1.0);
            let keys = random_f32(&mut rng, positions * width, 1.0);
            let values = random_f32(&mut rng, positions * width, 1.0);
            let last = positions - 1;
            let (mut s1, mut s2) = (vec![0.0; positions], vec![0.0; positions]);
            let (mut expected, mut got) = (vec![0.0; width], vec![0.0; width]);
            kernels::attend(&q, &keys, &values, last, hd, &mut s1, &mut expected);
            attend_twin(&q, &keys, &values, last, hd, &mut s2, &mut got);
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "hd {hd}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn exp_twin_is_accurate_and_swiglu_matches_reference() {
        let mut x = -100.0f32;
        while x < 100.0 {
            let (a, b) = (exp_twin(x), x.clamp(EXP_MIN, EXP_MAX).exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}) = {a}, expected {b}");
            x += 0.0137;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let g = random_f32(&mut rng, 1368, 30.0);
        let u = random_f32(&mut rng, 1368, 2.0);
        let (mut expected, mut got) = (g.clone(), g.clone());
        kernels::swiglu(&mut expected, &u);
        swiglu_twin(&mut got, &u);
        for (a, b) in got.iter().zip(&expected) {
            assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    #[test]
    fn sampling_weights_twin_follows_exp_of_scaled_logits() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for t in [0.7f32, 1.0, 0.05] {
            let mut v = random_f32(&mut rng, 1000, 20.0);
            v[10] = f32::NAN;
            v[11] = f32::NEG_INFINITY;
            let max = max_scaled_twin(&v, t).unwrap();
            let expected_max =
                v.iter().filter(|x| x.is_finite()).map(|&x| f64::from(x) / f64::from(t)).fold(f64::MIN, f64::max);
            assert!((f64::from(max) - expected_max).abs() <= 1e-6 * expected_max.abs());
            let mut w = vec![0.0; v.len()];
            sampling_weights_twin(&v, t, max, &mut w);
            for (i, (&x, &wi)) in v.iter().zip(&w).enumerate() {
                let d = f64::from(x) / f64::from(t) - f64::from(max);
                if !x.is_finite() || d < -f64::from(SAMPLING_CUTOFF) - 1e-3 {
                    assert_eq!(wi, 0.0, "t {t} [{i}]");
                } else if d > -f64::from(SAMPLING_CUTOFF) + 1e-3 {
                    let e = d.exp();
                    // exp's own error, plus v/t and the subtraction rounded in f32.
                    let rounding = 2.0 * f64::from(f32::EPSILON) * (f64::from(x / t).abs() + f64::from(max).abs());
                    assert!((f64::from(wi) - e).abs() <= (1e-6 + rounding) * e, "t {t} [{i}]: {wi} vs {e}");
                }
            }
        }
        // +∞ logits share all the mass.
        let v = [1.0, f32::INFINITY, 3.0, f32::INFINITY];
        let max = max_scaled_twin(&v, 0.5).unwrap();
        let mut w = [9.0; 4];
        sampling_weights_twin(&v, 0.5, max, &mut w);
        assert_eq!(w, [0.0, 1.0, 0.0, 1.0]);
        assert_eq!(max_scaled_twin(&[f32::NAN, f32::NEG_INFINITY], 1.0), None);
    }

    #[test]
    fn rms_norm_twin_matches_f32_reference() {
        let mut rng = ChaCha8Rng::seed_from_u64(10);
        for n in [512, 7, 1, 1368] {
            let x = random_f32(&mut rng, n, 3.0);
            let gain = random_f32(&mut rng, n, 2.0);
            let (mut expected, mut got) = (vec![0.0; n], vec![0.0; n]);
            kernels::rms_norm(&x, &gain, &mut expected);
            rms_norm_twin(&x, &gain, &mut got);
            for (a, b) in got.iter().zip(&expected) {
                assert!((a - b).abs() <= 1e-6 * (1.0 + b.abs()), "n {n}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn row_quads_hold_every_value_where_the_index_says() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        for (rows, cols) in [(9, 8), (4, 24), (3, 16), (13, 40), (8, 512)] {
            let values: Vec<i8> = (0..rows * cols).map(|_| rng.next_u32() as i8).collect();
            let m = crate::model::QuantizedMatrix::from_rows(rows, cols, 1.0, &values);
            assert_eq!(m.data.len(), values.len());
            let mut seen = vec![false; values.len()];
            for r in 0..rows {
                for c in 0..cols {
                    let i = m.index(r, c);
                    // The layout as documented, written out independently of `row_quad_index`.
                    let expected = if r < rows / 4 * 4 {
                        (r / 4) * 4 * cols + (c / 2) * 8 + (r % 4) * 2 + c % 2
                    } else {
                        r * cols + c
                    };
                    assert_eq!(i, expected, "{rows}×{cols} ({r}, {c})");
                    assert_eq!(m.data[i], values[r * cols + c], "{rows}×{cols} ({r}, {c})");
                    seen[i] = true;
                }
                assert!(m.row(r).eq(values[r * cols..(r + 1) * cols].iter().copied()));
            }
            assert!(seen.iter().all(|&s| s), "{rows}×{cols}: a permutation");
        }
    }

    #[test]
    fn int8_logits_twin_matches_f32_reference_within_rounding() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for cols in [8, 512, 1024] {
            let rows = 37;
            let data: Vec<i8> = (0..rows * cols).map(|_| (rng.next_u32() % 255) as i8).map(|v| v.max(-127)).collect();
            let h = random_f32(&mut rng, cols, 4.0);
            let head = crate::model::QuantizedMatrix::from_rows(rows, cols, 0.01, &data);
            let mut expected = vec![0.0; rows];
            kernels::quantized_logits(&head, &h, &mut expected);
            let mut got = vec![0.0; rows];
            int8_logits_twin(&head, &h, &mut got);
            let step = absmax(&h) / logits_quant_range(cols) as f32;
            for (a, b) in got.iter().zip(&expected) {
                let bound = 0.01 * 127.0 * step * cols as f32 / 2.0 + 1e-5 * b.abs();
                assert!((a - b).abs() <= bound, "cols {cols}: {a} vs {b}");
            }
        }
    }
}
