//! Twin of the SIMD head mixer (i16 codes, exact i32 blocks, f32 sums in the SIMD order).

use crate::kernels::layout::{MIXER_BLOCK, MIXER_INPUT_RANGE, PackedMixer};
use crate::kernels::quant::{Quantizer, absmax, degenerate_output};
use crate::octonion::SIGN;

/// Twin of the SIMD mixer: `z` and `out` are all heads of one position (`n_head · head_dim`,
/// `head_dim` a multiple of 16).
///
/// Per group of 8 heads, `z` is quantized to i16. For output head `i`, column `o` and input head
/// `j` (weight part `k = i ⊕ j`), the inputs go in blocks of 32 (four SIMD dot products): lane
/// `l` of a block's exact i32 sum holds inputs `n` with `(n mod 8) / 2 = l`. The blocks' sums are added
/// in f32 in order, scaled by the row's scale, added to (or, for a negative octonion sign,
/// subtracted from) the f32 accumulator; the lanes end as `(a0 + a2) + (a1 + a3)`.
pub(crate) fn head_mix_twin(mixer: &PackedMixer, z: &[f32], out: &mut [f32]) {
    let hd = mixer.head_dim();
    if hd == 0 {
        return;
    }
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
                    let row = &mixer.codes()[(k * hd + o) * hd..][..hd];
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
                    let sc = mixer.scales()[o * 8 + k];
                    for l in 0..4 {
                        let u = t[l] * sc;
                        acc[l] = if SIGN[i][j] > 0.0 { acc[l] + u } else { acc[l] - u };
                    }
                }
                let sum = (acc[0] + acc[2]) + (acc[1] + acc[3]);
                group_out[i * hd + o] = sum * (mixer.beta()[o] * quant.step);
            }
        }
    }
}
