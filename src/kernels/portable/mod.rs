//! The plain-Rust twins of the SIMD kernels: always compiled, the native path, the scalar wasm
//! path, and what the SIMD kernels are tested against bit for bit. Each does the same integer
//! arithmetic and the same f32 operations in the same order as its SIMD version
//! (`wasm32/simd128/` has the same file names).

// With SIMD128 the dispatch (`kernels/mod.rs`) runs the SIMD versions of most of these; the twins
// stay compiled there too, as what the SIMD kernels are tested against on wasm32.
#![cfg_attr(all(target_arch = "wasm32", target_feature = "simd128"), allow(dead_code))]

pub(crate) mod attention;
pub(crate) mod logits;
pub(crate) mod mixer;
pub(crate) mod norm;
pub(crate) mod sampling;
pub(crate) mod swiglu;
pub(crate) mod ternary;
