//! Kernels for wasm32 (the Internet Computer runs wasm32 modules).

pub(crate) mod simd128;
