//! RMSNorm, RoPE and the residual addition, SIMD128; twins in `portable/norm.rs`.

use core::arch::wasm32::*;

use crate::kernels::layout::RopeTable;
use crate::kernels::portable::norm::rms_inverse;

/// [`rms_norm_twin`](crate::kernels::portable::norm::rms_norm_twin), four elements at a time.
pub(crate) fn rms_norm(x: &[f32], gain: &[f32], out: &mut [f32]) {
    let n = x.len().min(gain.len()).min(out.len());
    let full = n / 4 * 4;
    let mut sums = f32x4_splat(0.0);
    for m in (0..full).step_by(4) {
        // SAFETY: 4 floats at m < full ≤ n.
        let v = unsafe { v128_load(x.as_ptr().add(m).cast()) };
        sums = f32x4_add(sums, f32x4_mul(v, v));
    }
    let mut lanes = [f32x4_extract_lane::<0>(sums), f32x4_extract_lane::<1>(sums), f32x4_extract_lane::<2>(sums), f32x4_extract_lane::<3>(sums)];
    for (m, &v) in x[full..].iter().enumerate() {
        lanes[m % 4] += v * v;
    }
    let inv = rms_inverse(lanes, x.len());
    let iv = f32x4_splat(inv);
    for m in (0..full).step_by(4) {
        // SAFETY: 4 floats at m in each slice.
        unsafe {
            let v = f32x4_mul(f32x4_mul(v128_load(x.as_ptr().add(m).cast()), iv), v128_load(gain.as_ptr().add(m).cast()));
            v128_store(out.as_mut_ptr().add(m).cast(), v);
        }
    }
    for m in full..n {
        out[m] = (x[m] * inv) * gain[m];
    }
}

/// [`rope_twin`](crate::kernels::portable::norm::rope_twin) (`head_dim` a multiple of 8), two pairs at a time: lanes
/// `(a, b, a', b')` times `(c, c, c', c')` plus the swapped lanes `(b, a, b', a')` times
/// `(−s, s, −s', s')` — per element the reference's products and sum (`a·c − b·s` is
/// `a·c + b·(−s)` exactly).
pub(crate) fn rope(x: &mut [f32], head_dim: usize, position: usize, table: &RopeTable) {
    let half = table.half();
    let (cos, sin) = (table.cos(position), table.sin(position));
    assert!(head_dim.is_multiple_of(8) && half * 2 >= head_dim);
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
pub(crate) fn add_in_place(x: &mut [f32], y: &[f32]) {
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
