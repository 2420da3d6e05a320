//! wasm32 SIMD128 versions of the kernels in `portable/` (their twins, same file names). Written
//! for the Internet Computer's cost model, where every wasm instruction is billed: loads cost 1
//! whatever their width, integer vector ops 1, f32 ops 2. Comments give the instructions per
//! inner step; `docs/KERNELS.md` explains the choices.
//!
//! Compiled only with `target_feature = "simd128"` (the canister's build sets it in
//! `.cargo/config.toml`). The kernels keep their scratch (lookup table, codes) in `static mut`s
//! at fixed addresses, which is sound only without threads:

// The kernels are unrolled by `seq_macro` with literal indices, so some unrolled steps read
// `0 * x`, `x + 0`, `I ^ I` or `a - a` (part 0, lane 0, the diagonal): written for the general index.
#![allow(clippy::erasing_op, clippy::identity_op, clippy::eq_op, reason = "unrolled code with literal indices (see above)")]

// Threads on wasm need the `atomics` feature; with it, the static scratch would be shared.
#[cfg(target_feature = "atomics")]
compile_error!("the SIMD128 kernels keep their scratch in statics and assume one thread (no `atomics`)");

pub(crate) mod attention;
mod lanes;
pub(crate) mod logits;
pub(crate) mod mixer;
pub(crate) mod norm;
pub(crate) mod sampling;
pub(crate) mod swiglu;
pub(crate) mod ternary;
