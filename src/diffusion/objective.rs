//! The masked-diffusion training objective.
//!
//! Per sequence: draw a mask rate t, keep a random-length prefix (so that short prompts are
//! in distribution at generation time), mask each other token with probability t, and score
//! cross-entropy on the masked tokens. With t ~ U(ε, 1) and weight 1/t the loss is the MDLM
//! ELBO; the discrete schedule draws t from {1.0, 0.9, …} as generation does.

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;
use crate::error::{Error, Result};
use crate::model::Encoder;

/// Written as `continuous` (ε = 0.05), `continuous:ε` or `steps:N`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MaskSchedule {
    /// t uniform on {1/n, 2/n, …, 1}: the rates a linear n-step generation visits.
    Steps { n: usize },
    /// t ~ U(ε, 1), loss weighted by 1/t (the ELBO).
    Continuous { eps: f32 },
}

impl MaskSchedule {
    pub const DEFAULT: MaskSchedule = MaskSchedule::Continuous { eps: 0.05 };
    /// What [`std::str::FromStr`] reads, for the options' help.
    pub const FORM: &'static str = "continuous, continuous:ε or steps:N";
}

impl Default for MaskSchedule {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for MaskSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            MaskSchedule::Continuous { eps } if eps == 0.05 => f.write_str("continuous"),
            MaskSchedule::Continuous { eps } => write!(f, "continuous:{eps}"),
            MaskSchedule::Steps { n } => write!(f, "steps:{n}"),
        }
    }
}

impl From<MaskSchedule> for String {
    fn from(s: MaskSchedule) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for MaskSchedule {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl std::str::FromStr for MaskSchedule {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        if s == "continuous" {
            return Ok(Self::DEFAULT);
        }
        if let Some(e) = s.strip_prefix("continuous:") {
            return match e.parse::<f32>() {
                Ok(eps) if eps > 0.0 && eps < 1.0 => Ok(MaskSchedule::Continuous { eps }),
                _ => Err(Error::options(format!("schedule `{s}`: ε must be in (0, 1)"))),
            };
        }
        if let Some(n) = s.strip_prefix("steps:") {
            let n: usize = n.parse().map_err(|_| Error::options(format!("bad schedule `{s}`")))?;
            if n == 0 {
                return Err(Error::options(format!("schedule `{s}`: steps:N needs N ≥ 1")));
            }
            return Ok(MaskSchedule::Steps { n });
        }
        Err(Error::options(format!("unknown schedule `{s}` ({})", Self::FORM)))
    }
}

impl MaskSchedule {
    pub fn draw(self, rng: &mut Rng) -> f32 {
        match self {
            MaskSchedule::Steps { n } => (rng.below(n) + 1) as f32 / n as f32,
            MaskSchedule::Continuous { eps } => eps + (1.0 - eps) * rng.next_f32(),
        }
    }

    /// Per-sequence loss weight: 1/t for the ELBO, 1 for the discrete schedule.
    pub fn weight(self, t: f32) -> f32 {
        match self {
            MaskSchedule::Steps { .. } => 1.0,
            MaskSchedule::Continuous { .. } => 1.0 / t,
        }
    }
}

/// One masked batch.
pub struct MaskedBatch {
    /// `[batch, seq]` inputs with masks applied.
    pub inputs: Vec<u32>,
    /// Flat indices into `batch × seq` of masked positions (ascending), their targets and
    /// weights.
    pub positions: Vec<u32>,
    pub targets: Vec<u32>,
    pub weights: Vec<f32>,
    /// Σ over sequences of the maskable (non-prefix, non-special) length: the ELBO's
    /// per-token normaliser.
    pub maskable: usize,
    pub batch: usize,
    pub seq: usize,
}

/// Masks `seqs` (each `<s> … </s>`, equal length). `max_prefix` bounds the kept prefix;
/// `fixed_t` overrides the drawn rate (evaluation).
pub fn mask_batch(
    seqs: &[Vec<u32>],
    mask_id: u32,
    schedule: MaskSchedule,
    max_prefix: usize,
    fixed_t: Option<f32>,
    rng: &mut Rng,
) -> MaskedBatch {
    let seq = seqs[0].len();
    let mut b = MaskedBatch {
        inputs: Vec::with_capacity(seqs.len() * seq),
        positions: Vec::new(),
        targets: Vec::new(),
        weights: Vec::new(),
        maskable: 0,
        batch: seqs.len(),
        seq,
    };
    for (bi, s) in seqs.iter().enumerate() {
        let t = fixed_t.unwrap_or_else(|| schedule.draw(rng));
        let w = schedule.weight(t);
        // Body is 1..seq-1; the prefix keeps its first `p` tokens.
        let body = seq - 2;
        let p = if max_prefix == 0 { 0 } else { rng.below(max_prefix.min(body - 1) + 1) };
        let mut masked_here = Vec::new();
        let row_start = b.inputs.len();
        for (i, &tok) in s.iter().enumerate() {
            let maskable = i > p && i < seq - 1;
            if maskable && rng.next_f32() < t {
                masked_here.push(i);
                b.inputs.push(mask_id);
            } else {
                b.inputs.push(tok);
            }
        }
        if masked_here.is_empty() {
            // Every sequence contributes at least one masked token.
            let i = p + 1 + rng.below(seq - 2 - p);
            b.inputs[row_start + i] = mask_id;
            masked_here.push(i);
        }
        b.maskable += seq - 2 - p;
        for i in masked_here {
            b.positions.push((bi * seq + i) as u32);
            b.targets.push(s[i]);
            b.weights.push(w);
        }
    }
    b
}

/// Loss terms of a batch: `(weighted sum of CE, plain sum of CE, masked count)`, as tensors
/// so the first can be differentiated.
/// Layers below `from` are frozen (see [`Encoder::train_loss`]).
pub fn loss_terms(encoder: &Encoder, batch: &MaskedBatch, from: usize) -> Result<(Tensor, Tensor, usize)> {
    let dev = Device::Cpu;
    let ids = Tensor::from_slice(&batch.inputs, (batch.batch, batch.seq), &dev)?;
    let ce = encoder.train_loss(&ids, &batch.positions, &batch.targets, from)?;
    let w = Tensor::from_slice(&batch.weights, batch.weights.len(), &dev)?;
    Ok(((&ce * &w)?.sum_all()?, ce.sum_all()?, batch.targets.len()))
}
