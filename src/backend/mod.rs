//! Where the encoder's heavy operations run.
//!
//! Today every op runs on the CPU: candle's tensors for most ops, and for the inference
//! linears (the bulk of the FLOPs) our own SIMD128 GEMM in [`gemm`] where it beats candle
//! (wasm32). The ops that have a fused fast path *and* a differentiable composite live in
//! [`cpu`], chosen by [`Mode`]: candle's fused layer norm and softmax record no backward
//! pass, so a training forward must use the composite versions or the gradients silently
//! stop there.

pub mod cpu;
pub mod gemm;
pub mod int8;
pub mod simd;
#[cfg(feature = "webgpu")]
pub mod webgpu;

/// Whether a forward pass must carry gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Fused kernels, no autograd (generation, evaluation).
    #[default]
    Inference,
    /// Only ops with backward passes (training).
    Train,
}
