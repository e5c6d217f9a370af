//! Unmask: text generation by masked diffusion with BERT/RoBERTa-family encoders.
//!
//! - [`model`]: configuration, weight loading (Hugging Face safetensors, GGUF), the encoder.
//! - [`diffusion`]: masking schedules, the samplers, infill templates.
//! - [`backend`]: where the heavy ops run.
//! - [`options`]: every caller-facing option, defined once.

pub mod backend;
pub mod diffusion;
pub mod error;
#[cfg(feature = "judge")]
pub mod judge;
pub mod model;
pub mod options;
pub mod rng;

pub use error::{Error, Result};
pub use model::Model;

#[cfg(target_arch = "wasm32")]
pub mod web;
