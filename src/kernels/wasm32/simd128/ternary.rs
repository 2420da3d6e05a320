//! The ternary octonion linear with lookup tables, SIMD128; twin in `portable/ternary.rs`.

use core::arch::wasm32::*;
use core::ptr::addr_of_mut;

use super::lanes::{absmax, codes4};
use crate::kernels::layout::{GROUP, GROUP_BYTES, LOOKUP_BLOCK, MAX_GROUPS, MAX_TABLE_BYTES, TernaryLinear};
use crate::kernels::quant::{Quantizer, degenerate_output};
use crate::octonion::SIGN;

/// The lookup table lives at a fixed address so that a lookup is `i32.load` (the offset) +
/// `v128.load offset=TABLE` with no address arithmetic.
///
/// Why a `static mut` is sound here: this module is compiled for wasm32 without the `atomics`
/// feature only (see `simd128/mod.rs`), where there is one thread and no way to start another,
/// and no kernel calls out to code that could re-enter it; every borrow of the statics ends
/// before the kernel returns.
// SAFETY (the initializer): all-zero bits are a valid v128.
static mut TABLE: [v128; MAX_TABLE_BYTES / 16] = [unsafe { core::mem::zeroed() }; MAX_TABLE_BYTES / 16];
/// Quantized activations of the layer being run (`[8][in_o]`, padded to whole groups).
static mut CODES: [i32; 8 * MAX_GROUPS * GROUP] = [0; 8 * MAX_GROUPS * GROUP];

#[inline(always)]
fn table_base() -> *mut u8 {
    addr_of_mut!(TABLE).cast::<u8>()
}

#[cfg(test)]
/// `y = layer(x)`; same results as [`ternary_linears_twin`](crate::kernels::portable::ternary::ternary_linears_twin).
pub(crate) fn ternary_linear(layer: &TernaryLinear, x: &[f32], y: &mut [f32]) {
    ternary_linears(&mut [(layer, y)], x)
}

/// Several layers of the same input width applied to the same `x`: the input is quantized and
/// its lookup table built once for all of them (q, k, v; gate, up).
pub(crate) fn ternary_linears(layers: &mut [(&TernaryLinear, &mut [f32])], x: &[f32]) {
    let Some((first, _)) = layers.first() else { return };
    let (in_o, groups) = (first.in_o(), first.groups());
    assert!(layers.iter().all(|(l, _)| l.in_o() == in_o) && first.table_bytes() <= MAX_TABLE_BYTES);
    let x = &x[..8 * in_o];
    let m = absmax(x);
    let Some(quant) = Quantizer::new(m, first.quant_range()) else {
        for (layer, y) in layers.iter_mut() {
            degenerate_output(m, &mut y[..8 * layer.out_o()]);
        }
        return;
    };
    let padded = groups * GROUP;
    // SAFETY: the only borrow of CODES (one thread, no re-entry: see TABLE); the slice is
    // checked, and fits since groups ≤ MAX_GROUPS (table_bytes ≤ MAX_TABLE_BYTES asserted above).
    let codes = unsafe { &mut (&mut *addr_of_mut!(CODES))[..8 * padded] };
    quantize_parts(x, in_o, padded, quant, codes);
    // SAFETY: groups · GROUP_BYTES ≤ MAX_TABLE_BYTES (asserted above) and codes holds 8 parts of
    // `padded` codes, as `build_table` requires.
    unsafe { build_table(codes, padded, groups) };
    for (layer, y) in layers.iter_mut() {
        let y = &mut y[..8 * layer.out_o()];
        // One straight-line row kernel per lookup count (no loop overhead, no padding beyond 4).
        macro_rules! dispatch {
            ($($n:literal),*) => {
                match layer.stride() {
                    $($n => seq_macro::seq!(N in $n..=$n { rows(Lookups~N, layer, quant, y) }),)*
                    _ => rows(LookupLoop { stride: layer.stride() }, layer, quant, y),
                }
            };
        }
        dispatch!(4, 8, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 64);
    }
}

/// The row loop, with `sum(table + half, offsets)` summing one half of the looked-up entries.
#[inline(always)]
fn rows<S: LookupSum>(sums: S, layer: &TernaryLinear, quant: Quantizer, y: &mut [f32]) {
    let (out_o, stride) = (layer.out_o(), layer.stride());
    assert!(layer.offsets().len() >= out_o * 8 * stride && layer.beta().len() >= out_o && y.len() >= 8 * out_o);
    let mut row = layer.offsets().as_ptr();
    for r in 0..out_o {
        let mut out_lo = i32x4_splat(0);
        let mut out_hi = i32x4_splat(0);
        macro_rules! part {
            ($k:literal) => {{
                // SAFETY: `row` walks `[out_o][8][stride]` offsets (length asserted above), and
                // `sums` reads `stride` of them per part (the dispatch picks it by the stride);
                // every offset is inside a table of this layer's groups (`TernaryLinear`'s
                // invariant), which is the table just built (same in_o, so the same groups).
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
        let out_lo = i32x4_add(out_lo, i32x4(NEGATIVE_LANES[0], NEGATIVE_LANES[1], NEGATIVE_LANES[2], NEGATIVE_LANES[3]));
        let out_hi = i32x4_add(out_hi, i32x4(NEGATIVE_LANES[4], NEGATIVE_LANES[5], NEGATIVE_LANES[6], NEGATIVE_LANES[7]));
        // SAFETY: r < out_o ≤ beta.len(), and y holds 8 · out_o floats (asserted above).
        unsafe {
            let factor = f32x4_splat(*layer.beta().get_unchecked(r) * quant.step);
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
                    // SAFETY: this trait method's contract, with stride N.
                    unsafe { Self::chain::<HALF, K>(row) }
                }
                }
                impl Lookups~N {
                // v128 has no C layout on other targets; this module is wasm32 + simd128 only.
                #[allow(improper_ctypes_definitions)]
                #[inline(never)]
                /// # Safety
                /// As [`LookupSum::sum`] with a stride of N.
                unsafe extern "C" fn chain<const HALF: usize, const K: usize>(row: *const u32) -> v128 {
                    // SAFETY: HALF ≤ 16 bytes into the static table.
                    let half = unsafe { table_base().add(HALF) as *const u8 };
                    // Part K's offsets at a constant distance: folded into the loads' offsets.
                    // SAFETY: part K < 8 of the row's [8][N] offsets (the caller's contract).
                    let p = unsafe { row.add(K * N) };
                    // SAFETY: j < N offsets of part K, each + HALF + 16 inside the table.
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
        // The trait's contract: `row` points to [8][stride] offsets, each + HALF + 16 inside the
        // table; stride is a multiple of LOOKUP_BLOCK (`TernaryLinear`'s invariant), so the
        // blocks of 4 end exactly at `end`.
        // SAFETY: HALF ≤ 16 bytes into the static table.
        let half = unsafe { table_base().add(HALF) as *const u8 };
        let mut acc = i32x4_splat(0);
        // SAFETY: part K < 8 of the row's [8][stride] offsets, and its end.
        let mut p = unsafe { row.add(K * self.stride) };
        // SAFETY: as above.
        let end = unsafe { p.add(self.stride) };
        while p != end {
            // SAFETY: see above.
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

/// The 81-entry table of every group (the layout the twin builds, `portable/ternary.rs`).
///
/// # Safety
/// `groups · GROUP_BYTES ≤ MAX_TABLE_BYTES`: the groups' tables are written to the static table.
unsafe fn build_table(codes: &[i32], padded: usize, groups: usize) {
    let table = table_base().cast::<v128>();
    assert!(codes.len() >= 8 * padded && padded >= groups * GROUP);
    let base = codes.as_ptr();
    /// # Safety
    /// `base` points to 8 parts of `padded` codes and `c < padded`.
    #[inline(always)]
    unsafe fn column(base: *const i32, padded: usize, c: usize) -> [v128; 2] {
        // SAFETY: c < padded and 8 parts of `padded` codes (asserted by the caller).
        let at = |p: usize| unsafe { *base.add(p * padded + c) };
        [i32x4(at(0), at(1), at(2), at(3)), i32x4(at(4), at(5), at(6), at(7))]
    }
    for g in 0..groups {
        let c = g * GROUP;
        // SAFETY: c + 3 < groups · GROUP ≤ padded, and codes holds 8 · padded (asserted above).
        let x = unsafe { [column(base, padded, c), column(base, padded, c + 1), column(base, padded, c + 2), column(base, padded, c + 3)] };
        // SAFETY: group g < groups of GROUP_BYTES / 16 vectors each, inside the table (this
        // function's contract).
        unsafe { build_group(table.add(g * GROUP_BYTES / 16), &x) };
    }
}

/// One group's table, straight-line: each entry is one add or subtract per half on a value
/// still in a local, and one store (`e + f ← e + x_j`, `e + 2f ← e − x_j`, f = 3^j).
///
/// # Safety
/// `t` must point to 162 writable vectors (81 entries of two).
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
