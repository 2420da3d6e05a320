//! wasm32 SIMD128 versions of the kernels in [`super::packed`] (their twins). Written for the
//! Internet Computer's cost model, where every wasm instruction is billed: loads cost 1 whatever
//! their width, integer vector ops 1, f32 ops 2. Comments give the instructions per inner step.

use core::arch::wasm32::*;
use core::ptr::addr_of_mut;

use super::packed::{
    GROUP, GROUP_BYTES, LOOKUP_BLOCK, MAX_TABLE_BYTES, Quantizer, TernaryLinear, degenerate_output, logits_quant_range,
};
use crate::octonion::SIGN;

/// The lookup table lives at a fixed address so that a lookup is `i32.load` (the offset) +
/// `v128.load offset=TABLE` with no address arithmetic. The canister is single-threaded and no
/// kernel re-enters, so one static table is enough.
static mut TABLE: [v128; MAX_TABLE_BYTES / 16] = [unsafe { core::mem::zeroed() }; MAX_TABLE_BYTES / 16];
/// Quantized activations of the layer being run (`[8][in_o]`, padded to whole groups).
static mut CODES: [i32; 8 * (MAX_TABLE_BYTES / GROUP_BYTES) * GROUP] = [0; 8 * (MAX_TABLE_BYTES / GROUP_BYTES) * GROUP];

#[inline(always)]
fn table_base() -> *mut u8 {
    addr_of_mut!(TABLE).cast::<u8>()
}

/// [`Quantizer::code`] of four lanes: `round_ties_even(x · inv)` as i32.
#[inline(always)]
fn codes4(x: v128, inv: v128) -> v128 {
    i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(x, inv)))
}

/// The codes of the 8 floats at `p`, narrowed to i16 (callers' ranges fit).
/// # Safety
/// `p` must point to 8 readable floats.
#[inline(always)]
unsafe fn codes8(p: *const f32, inv: v128) -> v128 {
    unsafe { i16x8_narrow_i32x4(codes4(v128_load(p.cast()), inv), codes4(v128_load(p.add(4).cast()), inv)) }
}

/// Largest |x| of a slice whose length is a multiple of 4, as the twin computes it (NaN → NaN,
/// which the quantizer then rejects like the twin's infinity).
fn absmax(x: &[f32]) -> f32 {
    let abs_mask = u32x4_splat(0x7fff_ffff);
    let mut m = u32x4_splat(0);
    for chunk in x.chunks_exact(4) {
        // SAFETY: chunk has 4 f32 = 16 bytes; v128 loads need no alignment.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        // Non-negative floats order like their bit patterns; NaN sorts above infinity.
        m = u32x4_max(m, v128_and(v, abs_mask));
    }
    let lanes = [
        u32x4_extract_lane::<0>(m),
        u32x4_extract_lane::<1>(m),
        u32x4_extract_lane::<2>(m),
        u32x4_extract_lane::<3>(m),
    ];
    f32::from_bits(lanes.into_iter().max().unwrap_or(0))
}

/// `y = layer(x)`; same results as [`super::packed::ternary_linear_twin`].
pub fn ternary_linear(layer: &TernaryLinear, x: &[f32], y: &mut [f32]) {
    ternary_linears(&mut [(layer, y)], x)
}

/// Several layers of the same input width applied to the same `x`: the input is quantized and
/// its lookup table built once for all of them (q, k, v; gate, up).
pub fn ternary_linears(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32]) {
    let Some((first, _)) = layers.first() else { return };
    let (in_o, groups) = (first.in_o, first.groups);
    assert!(layers.iter().all(|(l, _)| l.in_o == in_o) && first.table_bytes() <= MAX_TABLE_BYTES);
    let x = &x[..8 * in_o];
    let m = absmax(x);
    let Some(quant) = Quantizer::new(m, first.quant_range()) else {
        for (layer, y) in layers.iter_mut() {
            degenerate_output(m, &mut y[..8 * layer.out_o]);
        }
        return;
    };
    let padded = groups * GROUP;
    // SAFETY: single-threaded, not re-entered; sizes checked against MAX_TABLE_BYTES above.
    let codes = unsafe { &mut (&mut *addr_of_mut!(CODES))[..8 * padded] };
    quantize_parts(x, in_o, padded, quant, codes);
    unsafe { build_table(codes, padded, groups) };
    for (layer, y) in layers.iter_mut() {
        let y = &mut y[..8 * layer.out_o];
        // One straight-line row kernel per lookup count (no loop overhead, no padding beyond 4).
        macro_rules! dispatch {
            ($($n:literal),*) => {
                match layer.stride {
                    $($n => seq_macro::seq!(N in $n..=$n { rows(Lookups~N, layer, quant, y) }),)*
                    _ => rows(LookupLoop { stride: layer.stride }, layer, quant, y),
                }
            };
        }
        dispatch!(4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64);
    }
}

/// The row loop, with `sum(table + half, offsets)` summing one half of the looked-up entries.
#[inline(always)]
fn rows<S: LookupSum>(sums: S, layer: &TernaryLinear, quant: Quantizer, y: &mut [f32]) {
    let (out_o, stride) = (layer.out_o, layer.stride);
    assert!(layer.offsets.len() >= out_o * 8 * stride && layer.beta.len() >= out_o && y.len() >= 8 * out_o);
    let mut row = layer.offsets.as_ptr();
    for r in 0..out_o {
        let mut out_lo = i32x4_splat(0);
        let mut out_hi = i32x4_splat(0);
        macro_rules! part {
            ($k:literal) => {{
                // SAFETY: `row` walks `[out_o][8][stride]` offsets (length asserted above); every
                // offset was built by `pack` for this layer: inside its table.
                let (u_lo, u_hi) = unsafe { (sums.sum::<0, $k>(row), sums.sum::<16, $k>(row)) };
                // Output lane i takes input lane i⊕k: halves swap when k ≥ 4, lanes within a
                // half permute by k mod 4; then each lane gets its octonion sign.
                let (src_lo, src_hi) = if $k < 4 { (u_lo, u_hi) } else { (u_hi, u_lo) };
                let p_lo = permute::<{ $k % 4 }>(src_lo);
                let p_hi = permute::<{ $k % 4 }>(src_hi);
                // −v = (v ⊕ −1) + 1: flip the negative lanes here (1 instruction instead of an
                // `i32x4.mul` at 2) and add the +1s once per row ([`NEGATIVE_LANES`]).
                out_lo = i32x4_add(out_lo, v128_xor(p_lo, negative_lo($k)));
                out_hi = i32x4_add(out_hi, v128_xor(p_hi, negative_hi($k)));
            }};
        }
        part!(0);
        part!(1);
        part!(2);
        part!(3);
        part!(4);
        part!(5);
        part!(6);
        part!(7);
        row = row.wrapping_add(8 * stride);
        let out_lo =
            i32x4_add(out_lo, i32x4(NEGATIVE_LANES[0], NEGATIVE_LANES[1], NEGATIVE_LANES[2], NEGATIVE_LANES[3]));
        let out_hi =
            i32x4_add(out_hi, i32x4(NEGATIVE_LANES[4], NEGATIVE_LANES[5], NEGATIVE_LANES[6], NEGATIVE_LANES[7]));
        // SAFETY: r < out_o ≤ beta.len(), and y holds 8 · out_o floats (asserted above).
        unsafe {
            let factor = f32x4_splat(*layer.beta.get_unchecked(r) * quant.step);
            let lo = f32x4_mul(f32x4_convert_i32x4(out_lo), factor);
            let hi = f32x4_mul(f32x4_convert_i32x4(out_hi), factor);
            let y = y.as_mut_ptr().add(r);
            *y = f32x4_extract_lane::<0>(lo);
            *y.add(out_o) = f32x4_extract_lane::<1>(lo);
            *y.add(2 * out_o) = f32x4_extract_lane::<2>(lo);
            *y.add(3 * out_o) = f32x4_extract_lane::<3>(lo);
            *y.add(4 * out_o) = f32x4_extract_lane::<0>(hi);
            *y.add(5 * out_o) = f32x4_extract_lane::<1>(hi);
            *y.add(6 * out_o) = f32x4_extract_lane::<2>(hi);
            *y.add(7 * out_o) = f32x4_extract_lane::<3>(hi);
        }
    }
}

/// Straight-line sums of exactly `N` lookups (offsets relative to `half`, the table plus the
/// half's byte offset). Per lookup: `local.get`, `i32.load offset=4j`, `v128.load offset=TABLE`,
/// `i32x4.add`.
macro_rules! lookup_sums {
    ($($n:literal),*) => {
        $(
            seq_macro::seq!(N in $n..=$n {
                struct Lookups~N;
                impl LookupSum for Lookups~N {
                // Not inlined on purpose: on its own, LLVM keeps the chain on the wasm stack
                // (inlined, it hoists every load into locals, ~50 % more instructions). The C
                // ABI returns the v128 on the wasm stack; Rust's ABI would go through memory.
                #[inline(always)]
                unsafe fn sum<const HALF: usize, const K: usize>(&self, row: *const u32) -> v128 {
                    unsafe { Self::chain::<HALF, K>(row) }
                }
                }
                impl Lookups~N {
                // v128 has no C layout on other targets; this module is wasm32 + simd128 only.
                #[allow(improper_ctypes_definitions)]
                #[inline(never)]
                unsafe extern "C" fn chain<const HALF: usize, const K: usize>(row: *const u32) -> v128 {
                    let half = unsafe { table_base().add(HALF) as *const u8 };
                    // Part K's offsets at a constant distance: folded into the loads' offsets.
                    let p = unsafe { row.add(K * N) };
                    let e = |j: usize| unsafe { v128_load(half.add(*p.add(j) as usize).cast()) };
                    let mut acc = e(0);
                    seq_macro::seq!(J in 1..N {
                        acc = i32x4_add(acc, e(J));
                    });
                    acc
                }
                }
            });
        )*
    };
}
lookup_sums!(4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64);

/// Sums the table entries at `offsets`, relative to `half` (the table plus the half's 16 bytes).
trait LookupSum {
    /// Σ of the 16-byte halves at `TABLE + offset + HALF` (HALF 0 or 16) for the `stride`
    /// offsets of part `K` of the row at `row`.
    /// # Safety
    /// `row` must point to one row's `[8][stride]` offsets, each inside the table built for its
    /// layer.
    unsafe fn sum<const HALF: usize, const K: usize>(&self, row: *const u32) -> v128;
}

/// The loop for strides without a straight-line version (a multiple of [`LOOKUP_BLOCK`]).
struct LookupLoop {
    stride: usize,
}
impl LookupSum for LookupLoop {
    #[inline(always)]
    unsafe fn sum<const HALF: usize, const K: usize>(&self, row: *const u32) -> v128 {
        let half = unsafe { table_base().add(HALF) as *const u8 };
        let mut acc = i32x4_splat(0);
        let mut p = unsafe { row.add(K * self.stride) };
        let end = unsafe { p.add(self.stride) };
        while p != end {
            unsafe {
                let e = |j: usize| v128_load(half.add(*p.add(j) as usize).cast());
                acc = i32x4_add(acc, i32x4_add(i32x4_add(e(0), e(1)), i32x4_add(e(2), e(3))));
                p = p.add(LOOKUP_BLOCK);
            }
        }
        acc
    }
}

/// Lane `i` ← lane `i ⊕ K` (K < 4) of an i32x4.
#[inline(always)]
fn permute<const K: usize>(v: v128) -> v128 {
    match K {
        0 => v,
        1 => i32x4_shuffle::<1, 0, 3, 2>(v, v),
        2 => i32x4_shuffle::<2, 3, 0, 1>(v, v),
        _ => i32x4_shuffle::<3, 2, 1, 0>(v, v),
    }
}

/// −1 where output lane `i` takes part `k` with a negative sign, else 0.
#[inline(always)]
const fn negative(i: usize, k: usize) -> i32 {
    if SIGN[i][i ^ k] > 0.0 { 0 } else { -1 }
}
#[inline(always)]
fn negative_lo(k: usize) -> v128 {
    i32x4(negative(0, k), negative(1, k), negative(2, k), negative(3, k))
}
#[inline(always)]
fn negative_hi(k: usize) -> v128 {
    i32x4(negative(4, k), negative(5, k), negative(6, k), negative(7, k))
}
/// Per output lane, how many of the 8 parts enter it negated.
const NEGATIVE_LANES: [i32; 8] = {
    let mut count = [0; 8];
    let mut i = 0;
    while i < 8 {
        let mut k = 0;
        while k < 8 {
            count[i] -= negative(i, k);
            k += 1;
        }
        i += 1;
    }
    count
};

/// Codes of `x` (`[8][in_o]`) into `codes` (`[8][padded]`, zero beyond `in_o`).
fn quantize_parts(x: &[f32], in_o: usize, padded: usize, quant: Quantizer, codes: &mut [i32]) {
    let inv = f32x4_splat(quant.inv);
    for (part, dst) in x.chunks_exact(in_o).zip(codes.chunks_exact_mut(padded)) {
        let mut chunks = part.chunks_exact(4);
        let mut c = 0;
        for chunk in &mut chunks {
            // SAFETY: 4 f32 in, 4 i32 out, within `dst` since padded ≥ in_o.
            unsafe {
                let v = v128_load(chunk.as_ptr().cast());
                let q = codes4(v, inv);
                v128_store(dst.as_mut_ptr().add(c).cast(), q);
            }
            c += 4;
        }
        for (d, &v) in dst[c..].iter_mut().zip(chunks.remainder()) {
            *d = quant.code(v);
        }
        c += chunks.remainder().len();
        dst[c..].fill(0);
    }
}

/// The 81-entry table of every group (layout of [`super::packed::build_table_twin`]).
unsafe fn build_table(codes: &[i32], padded: usize, groups: usize) {
    let table = table_base().cast::<v128>();
    assert!(codes.len() >= 8 * padded && padded >= groups * GROUP);
    let base = codes.as_ptr();
    #[inline(always)]
    unsafe fn column(base: *const i32, padded: usize, c: usize) -> [v128; 2] {
        // SAFETY: c < padded and 8 parts of `padded` codes (asserted by the caller).
        let at = |p: usize| unsafe { *base.add(p * padded + c) };
        [i32x4(at(0), at(1), at(2), at(3)), i32x4(at(4), at(5), at(6), at(7))]
    }
    for g in 0..groups {
        let c = g * GROUP;
        let x = unsafe {
            [
                column(base, padded, c),
                column(base, padded, c + 1),
                column(base, padded, c + 2),
                column(base, padded, c + 3),
            ]
        };
        // SAFETY: groups · GROUP_BYTES ≤ MAX_TABLE_BYTES (checked by the caller).
        unsafe { build_group(table.add(g * GROUP_BYTES / 16), &x) };
    }
}

/// One group's table, straight-line: each entry is one add or subtract per half on a value
/// still in a local, and one store (`e + f ← e + x_j`, `e + 2f ← e − x_j`, f = 3^j).
#[inline(always)]
unsafe fn build_group(t: *mut v128, x: &[[v128; 2]; 4]) {
    let zero = i32x4_splat(0);
    let mut e = [[zero; 2]; 81];
    macro_rules! level {
        ($j:literal, $f:literal) => {
            seq_macro::seq!(E in 0..$f {
                e[E + $f] = [i32x4_add(e[E][0], x[$j][0]), i32x4_add(e[E][1], x[$j][1])];
                e[E + 2 * $f] = [i32x4_sub(e[E][0], x[$j][0]), i32x4_sub(e[E][1], x[$j][1])];
            });
        };
    }
    level!(0, 1);
    level!(1, 3);
    level!(2, 9);
    level!(3, 27);
    seq_macro::seq!(E in 0..81 {
        // SAFETY: the group's table has 81 entries of 2 vectors.
        unsafe {
            v128_store(t.add(2 * E), e[E][0]);
            v128_store(t.add(2 * E + 1), e[E][1]);
        }
    });
}

/// [`super::packed::interleave_rows4_twin`], 16 bytes of each row at a time: two rounds of
/// interleaving (2-byte units, then 4-byte pairs of them) turn 4 rows' units `u0‥u7` into
/// `r0u0 r1u0 r2u0 r3u0 r0u1 …`.
pub fn interleave_rows4(rows4: &[u8], quad: &mut [u8]) {
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
    super::packed::interleave_units_from(rows4, quad, 8 * chunks);
}

/// Hidden-state code pairs for the logits: vector `p` is `(h[2p], h[2p+1])` as i16, four times.
static mut HIDDEN_PAIRS: [v128; 1024] = [unsafe { core::mem::zeroed() }; 1024];

/// `logits[r] = scale · Σ_c head[r][c] · h[c]`; same results as
/// [`super::packed::int8_logits_twin`]. Four rows at a time from the row-quad layout
/// ([`super::QuantizedMatrix`]): each dot product advances all four sums, one per lane.
pub fn int8_logits(head: &super::QuantizedMatrix, h: &[f32], logits: &mut [f32]) {
    let cols = head.cols;
    if cols % 8 != 0 || cols > 2 * 1024 {
        return super::packed::int8_logits_twin(head, h, logits);
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
    let factor = head.scale * quant.step;
    let rows = head.rows.min(logits.len());
    let quads = rows.min(head.quad_rows()) / 4;
    let (quad_logits, rest) = logits[..rows].split_at_mut(4 * quads);
    let data = &head.data[..quads * 4 * cols];
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
        i32::from(if c % 2 == 0 { i16x8_extract_lane::<0>(pair) } else { i16x8_extract_lane::<1>(pair) })
    };
    for (r, logit) in rest.iter_mut().enumerate() {
        let dot =
            head.row(4 * quads + r).enumerate().fold(0i32, |acc, (c, w)| acc.wrapping_add(i32::from(w) * code(c)));
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

/// The head mixer for 64-wide heads; same results as [`super::packed::head_mix_twin`]. The 512
/// activation codes of a group stay in wasm locals; per output column the 8×8 (i, j) blocks are
/// straight-line code: per 32 inputs four `dot_i16x8` on a row loaded at a constant offset
/// (LLVM keeps each row in locals for the 8 heads that use it), three i32 adds, one convert and
/// one f32 add.
pub fn head_mix_64(mixer: &super::packed::PackedMixer, z: &[f32], out: &mut [f32]) {
    use super::packed::MIXER_INPUT_RANGE;
    const HD: usize = 64;
    assert!(mixer.head_dim == HD && mixer.codes.len() == 8 * HD * HD && mixer.scales.len() == 8 * HD);
    for (group_in, group_out) in z.chunks_exact(8 * HD).zip(out.chunks_exact_mut(8 * HD)) {
        let m = absmax(group_in);
        let Some(quant) = Quantizer::new(m, MIXER_INPUT_RANGE) else {
            degenerate_output(m, group_out);
            continue;
        };
        let inv = f32x4_splat(quant.inv);
        let zc: [v128; 64] = core::array::from_fn(|c| {
            // SAFETY: group_in has 512 floats; c < 64.
            unsafe { codes8(group_in.as_ptr().add(8 * c), inv) }
        });
        for o in 0..HD {
            // SAFETY: rows `(k·64 + o)·64 .. +64` of the asserted code array.
            let row = unsafe { mixer.codes.as_ptr().add(o * HD) };
            let scales = &mixer.scales[o * 8..o * 8 + 8];
            let mut acc = [f32x4_splat(0.0); 8];
            seq_macro::seq!(I in 0..8 {
                let mut a = f32x4_splat(0.0);
                seq_macro::seq!(J in 0..8 {
                    // SAFETY: part (I ^ J) of row o: 64 codes.
                    let w = unsafe { row.add((I ^ J) * HD * HD) };
                    let dot = |n: usize| unsafe { i32x4_dot_i16x8(v128_load(w.add(8 * n).cast()), zc[J * 8 + n]) };
                    // Blocks of 32 inputs summed exactly in i32 ([`super::packed::MIXER_BLOCK`]).
                    let block = |b: usize| {
                        let n = 4 * b;
                        f32x4_convert_i32x4(i32x4_add(i32x4_add(dot(n), dot(n + 1)), i32x4_add(dot(n + 2), dot(n + 3))))
                    };
                    let t = f32x4_add(block(0), block(1));
                    let u = f32x4_mul(t, f32x4_splat(scales[I ^ J]));
                    a = if SIGN[I][J] > 0.0 { f32x4_add(a, u) } else { f32x4_sub(a, u) };
                });
                acc[I] = a;
            });
            let factor = f32x4_splat(mixer.beta[o] * quant.step);
            for (half, quad) in acc.chunks_exact(4).enumerate() {
                let v = f32x4_mul(reduce4_f32(quad[0], quad[1], quad[2], quad[3]), factor);
                group_out[(4 * half) * HD + o] = f32x4_extract_lane::<0>(v);
                group_out[(4 * half + 1) * HD + o] = f32x4_extract_lane::<1>(v);
                group_out[(4 * half + 2) * HD + o] = f32x4_extract_lane::<2>(v);
                group_out[(4 * half + 3) * HD + o] = f32x4_extract_lane::<3>(v);
            }
        }
    }
}

/// Lane r = `(x0 + x2) + (x1 + x3)` of the r-th argument, in exactly that order.
#[inline(always)]
fn reduce4_f32(a: v128, b: v128, c: v128, d: v128) -> v128 {
    let ab = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(a, b), i32x4_shuffle::<2, 3, 6, 7>(a, b));
    let cd = f32x4_add(i32x4_shuffle::<0, 1, 4, 5>(c, d), i32x4_shuffle::<2, 3, 6, 7>(c, d));
    f32x4_add(i32x4_shuffle::<0, 2, 4, 6>(ab, cd), i32x4_shuffle::<1, 3, 5, 7>(ab, cd))
}

/// Causal attention, f32; same results as [`super::packed::attend_twin`] (`head_dim` a multiple
/// of 4). Per position and 4 dimensions: one key load, `f32x4.mul`, `f32x4.add` for the score;
/// one value load, `f32x4.mul`, `f32x4.add` for the output.
pub fn attend(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    last: usize,
    head_dim: usize,
    scores: &mut [f32],
    out: &mut [f32],
) {
    if head_dim == 64 {
        return attend_64(q, keys, values, last, scores, out);
    }
    let width = q.len();
    let scale = 1.0 / (head_dim as f32).sqrt();
    let scores = &mut scores[..=last];
    let chunks = head_dim / 4;
    assert!(head_dim % 4 == 0 && keys.len() >= (last + 1) * width && values.len() >= (last + 1) * width);
    for (h, out_head) in out.chunks_exact_mut(head_dim).enumerate() {
        let qh = &q[h * head_dim..(h + 1) * head_dim];
        for (s, score) in scores.iter_mut().enumerate() {
            // SAFETY: position s of head h: head_dim floats inside `keys` (asserted above).
            let k = unsafe { keys.as_ptr().add(s * width + h * head_dim) };
            let mut acc = f32x4_splat(0.0);
            for c in 0..chunks {
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

/// `g ← g / (1 + exp(−g)) · u`; same results as [`super::packed::swiglu_twin`].
pub fn swiglu(g: &mut [f32], u: &[f32]) {
    use super::packed::exp_twin;
    let n = g.len().min(u.len());
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: 4 floats at i in both slices.
        unsafe {
            let gp = g.as_mut_ptr().add(i);
            let gv = v128_load(gp.cast());
            let e = exp4(f32x4_neg(gv));
            let out = f32x4_mul(f32x4_div(gv, f32x4_add(f32x4_splat(1.0), e)), v128_load(u.as_ptr().add(i).cast()));
            v128_store(gp.cast(), out);
        }
        i += 4;
    }
    for (a, &b) in g[i..n].iter_mut().zip(&u[i..n]) {
        *a = *a / (1.0 + exp_twin(-*a)) * b;
    }
}

/// Index of the largest logit, the first on ties, NaN never winning: the same answer as
/// [`crate::sampling::argmax`], with four lanes compared at a time (`f32x4.gt` + two
/// `v128.bitselect` per 4 logits instead of a scalar float compare costing 3 per logit).
pub fn argmax(logits: &[f32]) -> Option<usize> {
    let chunks = logits.len() / 4;
    let mut best = f32x4_splat(f32::NEG_INFINITY);
    let mut best_index = i32x4_splat(-1);
    let mut index = i32x4(0, 1, 2, 3);
    let four = i32x4_splat(4);
    for c in 0..chunks {
        // SAFETY: chunk c of the slice.
        let v = unsafe { v128_load(logits.as_ptr().add(4 * c).cast()) };
        // Strictly greater: NaN is never greater, ties keep the earlier index.
        let better = f32x4_gt(v, best);
        best = v128_bitselect(v, best, better);
        best_index = v128_bitselect(index, best_index, better);
        index = i32x4_add(index, four);
    }
    let mut result: Option<(usize, f32)> = None;
    let lanes = [
        (i32x4_extract_lane::<0>(best_index), f32x4_extract_lane::<0>(best)),
        (i32x4_extract_lane::<1>(best_index), f32x4_extract_lane::<1>(best)),
        (i32x4_extract_lane::<2>(best_index), f32x4_extract_lane::<2>(best)),
        (i32x4_extract_lane::<3>(best_index), f32x4_extract_lane::<3>(best)),
    ];
    let tail = (4 * chunks..logits.len()).map(|i| (i as i32, logits[i]));
    for (i, v) in lanes.into_iter().chain(tail) {
        if i < 0 || v.is_nan() {
            continue;
        }
        let i = i as usize;
        if result.is_none_or(|(bi, bv)| v > bv || (v == bv && i < bi)) {
            result = Some((i, v));
        }
    }
    // Nothing above -inf: the scalar version answers the first entry that is not NaN.
    match result {
        Some((i, v)) if v > f32::NEG_INFINITY => Some(i),
        _ => logits.iter().position(|v| !v.is_nan()),
    }
}

/// [`super::packed::rms_norm_twin`], four elements at a time.
pub fn rms_norm(x: &[f32], gain: &[f32], out: &mut [f32]) {
    let n = x.len().min(gain.len()).min(out.len());
    let full = n / 4 * 4;
    let mut sums = f32x4_splat(0.0);
    for m in (0..full).step_by(4) {
        // SAFETY: 4 floats at m < full ≤ n.
        let v = unsafe { v128_load(x.as_ptr().add(m).cast()) };
        sums = f32x4_add(sums, f32x4_mul(v, v));
    }
    let mut lanes = [
        f32x4_extract_lane::<0>(sums),
        f32x4_extract_lane::<1>(sums),
        f32x4_extract_lane::<2>(sums),
        f32x4_extract_lane::<3>(sums),
    ];
    for (m, &v) in x[full..].iter().enumerate() {
        lanes[m % 4] += v * v;
    }
    let inv = super::packed::rms_inverse(lanes, x.len());
    let iv = f32x4_splat(inv);
    for m in (0..full).step_by(4) {
        // SAFETY: 4 floats at m in each slice.
        unsafe {
            let v =
                f32x4_mul(f32x4_mul(v128_load(x.as_ptr().add(m).cast()), iv), v128_load(gain.as_ptr().add(m).cast()));
            v128_store(out.as_mut_ptr().add(m).cast(), v);
        }
    }
    for m in full..n {
        out[m] = (x[m] * inv) * gain[m];
    }
}

/// [`super::kernels::rope`] (`head_dim` a multiple of 8), two pairs at a time: lanes
/// `(a, b, a', b')` times `(c, c, c', c')` plus the swapped lanes `(b, a, b', a')` times
/// `(−s, s, −s', s')` — per element the reference's products and sum (`a·c − b·s` is
/// `a·c + b·(−s)` exactly).
pub fn rope(x: &mut [f32], head_dim: usize, position: usize, table: &super::RopeTable) {
    let half = table.half;
    let cos = &table.cos[position * half..(position + 1) * half];
    let sin = &table.sin[position * half..(position + 1) * half];
    assert!(head_dim % 8 == 0 && half * 2 >= head_dim);
    // Flips the sign of the even lanes (exact negation).
    let negate_even = u32x4(0x8000_0000, 0, 0x8000_0000, 0);
    for head in x.chunks_exact_mut(head_dim) {
        for i in (0..head_dim / 2).step_by(4) {
            // SAFETY: pairs i‥i+4 of the head (8 floats at 2i < head_dim), and 4 table entries
            // at i < head_dim / 2 ≤ half.
            unsafe {
                let c = v128_load(cos.as_ptr().add(i).cast());
                let s = v128_load(sin.as_ptr().add(i).cast());
                let p = head.as_mut_ptr().add(2 * i);
                for (j, (cd, sd)) in [
                    (i32x4_shuffle::<0, 0, 1, 1>(c, c), i32x4_shuffle::<0, 0, 1, 1>(s, s)),
                    (i32x4_shuffle::<2, 2, 3, 3>(c, c), i32x4_shuffle::<2, 2, 3, 3>(s, s)),
                ]
                .into_iter()
                .enumerate()
                {
                    let v = v128_load(p.add(4 * j).cast());
                    let swapped = i32x4_shuffle::<1, 0, 3, 2>(v, v);
                    let out = f32x4_add(f32x4_mul(v, cd), f32x4_mul(swapped, v128_xor(sd, negate_even)));
                    v128_store(p.add(4 * j).cast(), out);
                }
            }
        }
    }
}

/// `x += y`, four at a time.
pub fn add_in_place(x: &mut [f32], y: &[f32]) {
    let n = x.len().min(y.len());
    let full = n / 4 * 4;
    for m in (0..full).step_by(4) {
        // SAFETY: 4 floats at m in both slices.
        unsafe {
            let p = x.as_mut_ptr().add(m);
            v128_store(p.cast(), f32x4_add(v128_load(p.cast()), v128_load(y.as_ptr().add(m).cast())));
        }
    }
    for m in full..n {
        x[m] += y[m];
    }
}

/// [`super::packed::max_scaled_twin`], four logits at a time (`f32x4.div`, a mask for the logits
/// above −∞, `f32x4.pmax`).
pub fn max_scaled(logits: &[f32], t: f32) -> Option<f32> {
    let tv = f32x4_splat(t);
    let neg_inf = f32x4_splat(f32::NEG_INFINITY);
    let mut m = neg_inf;
    let mut chunks = logits.chunks_exact(4);
    for chunk in &mut chunks {
        // SAFETY: 4 floats.
        let v = unsafe { v128_load(chunk.as_ptr().cast()) };
        let s = v128_bitselect(f32x4_div(v, tv), neg_inf, f32x4_gt(v, neg_inf));
        // pmax(m, s) = m < s ? s : m, as the twin.
        m = f32x4_pmax(m, s);
    }
    let lanes = [
        f32x4_extract_lane::<0>(m),
        f32x4_extract_lane::<1>(m),
        f32x4_extract_lane::<2>(m),
        f32x4_extract_lane::<3>(m),
    ];
    let tail = super::packed::max_scaled_twin(chunks.remainder(), t).unwrap_or(f32::NEG_INFINITY);
    let max = lanes.into_iter().chain([tail]).fold(f32::NEG_INFINITY, |max, s| if max < s { s } else { max });
    (max > f32::NEG_INFINITY).then_some(max)
}

/// [`super::packed::sampling_weights_twin`], four logits at a time with [`exp4`].
pub fn sampling_weights(logits: &[f32], t: f32, max: f32, weights: &mut [f32]) {
    let n = logits.len().min(weights.len());
    let (tv, mv) = (f32x4_splat(t), f32x4_splat(max));
    let floor = f32x4_splat(max - super::packed::SAMPLING_CUTOFF);
    let one = f32x4_splat(1.0);
    let mut i = 0;
    while i + 4 <= n {
        // SAFETY: 4 floats at i in both slices.
        unsafe {
            let s = f32x4_div(v128_load(logits.as_ptr().add(i).cast()), tv);
            let d = f32x4_sub(s, mv);
            let w = v128_bitselect(exp4(d), one, f32x4_eq(d, d));
            v128_store(weights.as_mut_ptr().add(i).cast(), v128_and(w, f32x4_ge(s, floor)));
        }
        i += 4;
    }
    super::packed::sampling_weights_twin(&logits[i..n], t, max, &mut weights[i..n]);
}

/// [`attend`] for 64-wide heads: the query's 16 vectors and the output's 16 accumulators stay in
/// wasm locals across all positions.
fn attend_64(q: &[f32], keys: &[f32], values: &[f32], last: usize, scores: &mut [f32], out: &mut [f32]) {
    const HD: usize = 64;
    let width = q.len();
    let scale = 1.0 / (HD as f32).sqrt();
    let scores = &mut scores[..=last];
    assert!(width % HD == 0 && keys.len() >= (last + 1) * width && values.len() >= (last + 1) * width);
    for (h, out_head) in out.chunks_exact_mut(HD).enumerate() {
        // SAFETY: head h of q: 64 floats.
        let qv: [v128; 16] = core::array::from_fn(|c| unsafe { v128_load(q.as_ptr().add(h * HD + 4 * c).cast()) });
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

/// Softmax in place; same results as [`super::packed::softmax_twin`].
fn softmax(scores: &mut [f32]) {
    use super::packed::exp_twin;
    let n = scores.len();
    let full = n / 4 * 4;
    let mut m = f32x4_splat(f32::NEG_INFINITY);
    for c in (0..full).step_by(4) {
        // SAFETY: 4 scores at c < full ≤ n.
        m = f32x4_pmax(m, unsafe { v128_load(scores.as_ptr().add(c).cast()) });
    }
    let mut max = f32::NEG_INFINITY;
    for v in
        [f32x4_extract_lane::<0>(m), f32x4_extract_lane::<1>(m), f32x4_extract_lane::<2>(m), f32x4_extract_lane::<3>(m)]
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
        unsafe {
            let p = scores.as_mut_ptr().add(c);
            let e = exp4(f32x4_sub(v128_load(p.cast()), mx));
            v128_store(p.cast(), e);
            sums = f32x4_add(sums, e);
        }
    }
    let mut lanes = [
        f32x4_extract_lane::<0>(sums),
        f32x4_extract_lane::<1>(sums),
        f32x4_extract_lane::<2>(sums),
        f32x4_extract_lane::<3>(sums),
    ];
    for (i, score) in scores[full..].iter_mut().enumerate() {
        *score = exp_twin(*score - max);
        lanes[(full + i) % 4] += *score;
    }
    let inv = 1.0 / ((lanes[0] + lanes[2]) + (lanes[1] + lanes[3]));
    let iv = f32x4_splat(inv);
    for c in (0..full).step_by(4) {
        unsafe {
            let p = scores.as_mut_ptr().add(c);
            v128_store(p.cast(), f32x4_mul(v128_load(p.cast()), iv));
        }
    }
    for score in scores[full..].iter_mut() {
        *score *= inv;
    }
}

/// [`super::packed::exp_twin`] on four lanes, step for step (so the results are identical).
#[inline(always)]
fn exp4(x: v128) -> v128 {
    use super::packed::{EXP_MAX, EXP_MIN, EXP_POLY, LN2_HI, LN2_LO};
    let x = f32x4_pmax(f32x4_splat(EXP_MIN), x);
    let x = f32x4_pmin(f32x4_splat(EXP_MAX), x);
    let nf = f32x4_nearest(f32x4_mul(x, f32x4_splat(core::f32::consts::LOG2_E)));
    let r = f32x4_sub(f32x4_sub(x, f32x4_mul(nf, f32x4_splat(LN2_HI))), f32x4_mul(nf, f32x4_splat(LN2_LO)));
    let mut poly = f32x4_splat(EXP_POLY[6]);
    seq_macro::seq!(C in 0..6 {
        poly = f32x4_add(f32x4_mul(poly, r), f32x4_splat(EXP_POLY[5 - C]));
    });
    f32x4_mul(poly, i32x4_shl(i32x4_add(i32x4_trunc_sat_f32x4(nf), i32x4_splat(127)), 23))
}
