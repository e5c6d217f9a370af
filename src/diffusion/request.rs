//! Requests as they arrive from outside (JS objects, JSON): parsed with `serde`, checked, and
//! turned into a sampling [`Session`] or a [`Trainer`]. Kept out of the wasm layer so the
//! same code is fuzzed natively (`fuzz/fuzz_targets/request.rs`) and the web surface stays thin.

use serde::Deserialize;

use super::corpus::split_documents;
use super::{Canvas, SampleOptions, Session, TrainOptions, Trainer};
use crate::error::{Error, Result};
use crate::options::OptionSet;
use crate::Model;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pin {
    /// Index among the masked positions (not the absolute position).
    pub position: usize,
    pub text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CanvasIn {
    pub ids: Vec<u32>,
    pub fixed: Vec<bool>,
}

/// A generation: exactly one of `prompt`, `template`, `canvas`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GenerateRequest {
    pub prompt: Option<String>,
    pub template: Option<String>,
    pub canvas: Option<CanvasIn>,
    pub length: Option<usize>,
    #[serde(default)]
    pub pins: Vec<Pin>,
    /// Positions to re-mask in `canvas` (edit in place).
    #[serde(default)]
    pub remask: Vec<usize>,
    /// Checked against [`SampleOptions`]' definitions (see [`crate::options`]).
    #[serde(default)]
    pub options: serde_json::Value,
}

/// Parses a JSON request; a malformed one is an options error naming the field.
pub fn from_json<T: for<'de> Deserialize<'de>>(json: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(json).map_err(|e| Error::options(format!("{what}: {e}")))
}

impl GenerateRequest {
    /// The canvas this request describes, checked against the model's context and vocabulary,
    /// and a sampling session over it.
    pub fn into_session(self, model: &Model) -> Result<Session> {
        let codec = &model.codec;
        let max = model.config().max_sequence_len();
        let mut canvas = match (self.prompt, self.template, self.canvas) {
            (Some(p), None, None) => Canvas::from_prompt(codec, &p, self.length.unwrap_or(32), max)?,
            (None, Some(t), None) => Canvas::from_template(codec, &t, max)?,
            (None, None, Some(c)) => {
                if c.ids.len() > max {
                    return Err(Error::input(format!("canvas of {} tokens exceeds the context of {max}", c.ids.len())));
                }
                let vocab = model.config().vocab_size;
                if let Some(bad) = c.ids.iter().find(|&&i| i as usize >= vocab) {
                    return Err(Error::input(format!("canvas token id {bad} is outside the vocabulary of {vocab}")));
                }
                Canvas::new(c.ids, c.fixed, codec.mask_id)?
            }
            _ => return Err(Error::input("give exactly one of prompt, template or canvas")),
        };
        canvas.remask(&self.remask)?;
        for pin in &self.pins {
            let ids = codec.encode(&pin.text)?;
            let masked = canvas.masked();
            let at = *masked.get(pin.position).ok_or_else(|| {
                Error::input(format!("pin position {} is outside the {} masked tokens", pin.position, masked.len()))
            })?;
            canvas.pin(at, &ids)?;
        }
        let options = SampleOptions::from_value(self.options, "sampling options")?;
        Session::new(canvas, &codec.banned_ids(), &options)
    }

    /// A sample of `length` tokens after `prompt` with `options` (a training run's samples).
    pub fn sample(prompt: &str, length: usize, options: &SampleOptions) -> Self {
        GenerateRequest {
            prompt: Some(prompt.to_string()),
            template: None,
            canvas: None,
            length: Some(length),
            pins: vec![],
            remask: vec![],
            options: crate::options::to_json(options),
        }
    }
}

/// A training run on a pasted corpus.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrainRequest {
    /// `finetune` the loaded model, or `scratch` (a new tokenizer and model).
    pub mode: String,
    /// The size of a model from scratch.
    #[serde(default = "default_size")]
    pub size: String,
    /// Checked against [`TrainOptions`]' definitions (see [`crate::options`]).
    #[serde(default)]
    pub options: serde_json::Value,
}

fn default_size() -> String {
    "tiny".into()
}

impl TrainRequest {
    pub fn into_trainer(self, model: &Model, corpus: &str) -> Result<Trainer> {
        let docs = split_documents(corpus);
        let given_steps = self.options.get("steps").is_some_and(|v| !v.is_null());
        let options = TrainOptions::from_value(self.options, "training options")?.budgeted(given_steps);
        match self.mode.as_str() {
            "finetune" => Trainer::new(model, &docs, options),
            "scratch" => {
                // Options are checked before the (slow) tokenizer training.
                options.validate(usize::MAX)?;
                let codec = crate::model::bpe::train_bpe(&docs, options.vocab)?;
                Trainer::from_scratch(&self.size, codec, &docs, options)
            }
            m => Err(Error::options(format!("mode must be `finetune` or `scratch`, got `{m}`"))),
        }
    }
}
