//! Discrete text diffusion with a masked language model.
//!
//! A canvas of tokens, some fixed (prompt, pinned words) and some `<mask>`, is denoised in
//! steps: each step runs the encoder once, proposes a token for every masked position of the
//! current block, and commits some of them according to a [`Strategy`] and a [`Schedule`].
//! Committed tokens are never re-masked, so the number of masks only goes down.

pub mod adamw;
pub mod canvas;
pub mod corpus;
pub mod finetune;
pub mod objective;
pub mod request;
pub use crate::rng;
pub mod sampler;
pub mod sampling;
pub mod schedule;
pub mod template;
pub mod trainer;

pub use canvas::Canvas;
pub use sampler::{generate, run, AsyncDenoiser, Denoiser, Now, Outcome, SampleOptions, Session, Step, Strategy};
pub use sampling::{Ranked, Scoring};
pub use schedule::Schedule;
pub use trainer::{TrainOptions, Trainer};
