//! One error type for the whole core. Every failure a user can cause (bad files, bad options,
//! bad text) is a variant with a message that names the offending thing, so the CLI and the
//! JS facade can report it without a panic.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// A model file or folder is unreadable, truncated, or of a layout we do not know.
    #[error("model: {0}")]
    Model(String),
    /// A tensor is missing or has the wrong shape; the message names it.
    #[error("tensor `{name}`: {problem}")]
    Tensor { name: String, problem: String },
    /// The tokenizer is missing, unreadable, or does not fit the model.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// Caller-supplied options are out of range or inconsistent.
    #[error("invalid option: {0}")]
    Options(String),
    /// The prompt or template does not fit (too long, empty, unparsable).
    #[error("input: {0}")]
    Input(String),
    /// A training run cannot go on (empty corpus, NaN loss, ...).
    #[error("training: {0}")]
    Training(String),
    /// The GPU backend is unavailable or failed (no adapter, limits, lost device).
    #[error("device: {0}")]
    Device(String),
    /// The caller asked to stop.
    #[error("cancelled")]
    Cancelled,
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// Errors from candle that are not attributable to the user's input.
    #[error("tensor backend: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn options(msg: impl Into<String>) -> Self {
        Error::Options(msg.into())
    }
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }
    pub fn model(msg: impl Into<String>) -> Self {
        Error::Model(msg.into())
    }
    pub fn tensor(name: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Tensor { name: name.into(), problem: problem.into() }
    }
    /// A short machine-readable kind, used by the JS facade to pick an Error subclass.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Model(_) | Error::Tensor { .. } => "ModelError",
            Error::Tokenizer(_) => "TokenizerError",
            Error::Options(_) => "OptionsError",
            Error::Input(_) => "InputError",
            Error::Training(_) => "TrainingError",
            Error::Device(_) => "DeviceError",
            Error::Cancelled => "AbortError",
            Error::Io(_) => "IoError",
            Error::Candle(_) => "BackendError",
        }
    }
}
