//! A runnable Walsh model: [`assembly`](Model::load) turns a `.walsh` file into weights in the
//! kernels' layouts, checked against its config; the forward pass ([`Model::forward`], or step by
//! step for callers with an instruction budget) runs them with a [`KvCache`].

mod assembly;
mod forward;

pub use assembly::{LoadError, Model};
pub use forward::{Activations, InferenceError, KvCache};
