//! The head mixer for 64-wide heads, SIMD128; twin in `portable/mixer.rs`.

use core::arch::wasm32::*;

use super::lanes::{absmax, codes8};
use crate::kernels::layout::{MIXER_INPUT_RANGE, PackedMixer};
use crate::kernels::quant::{Quantizer, degenerate_output};
use crate::octonion::SIGN;

/// The head mixer for 64-wide heads; same results as [`head_mix_twin`](crate::kernels::portable::mixer::head_mix_twin). The 512
/// activation codes of a group stay in wasm locals; per output column the 8×8 (i, j) blocks are
/// straight-line code: per 32 inputs four `dot_i16x8` on a row loaded at a constant offset
/// (LLVM keeps each row in locals for the 8 heads that use it), three i32 adds, one convert and
/// one f32 add.
pub(crate) fn head_mix_64(mixer: &PackedMixer, z: &[f32], out: &mut [f32]) {
    const HD: usize = 64;
    assert!(mixer.head_dim() == HD && mixer.codes().len() == 8 * HD * HD && mixer.scales().len() == 8 * HD);
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
            let row = unsafe { mixer.codes().as_ptr().add(o * HD) };
            let scales = &mixer.scales()[o * 8..o * 8 + 8];
            let mut acc = [f32x4_splat(0.0); 8];
            seq_macro::seq!(I in 0..8 {
                let mut a = f32x4_splat(0.0);
                seq_macro::seq!(J in 0..8 {
                    // SAFETY: part (I ^ J) of row o: 64 codes.
                    let w = unsafe { row.add((I ^ J) * HD * HD) };
                    let dot = |n: usize| unsafe { i32x4_dot_i16x8(v128_load(w.add(8 * n).cast()), zc[J * 8 + n]) };
                    // Blocks of 32 inputs summed exactly in i32 ([`MIXER_BLOCK`](crate::kernels::layout::MIXER_BLOCK)).
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
            let factor = f32x4_splat(mixer.beta()[o] * quant.step);
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
