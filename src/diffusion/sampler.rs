//! The denoising loop: strategies, blocks, and the per-step report.

use serde::Serialize;

use super::canvas::Canvas;
use crate::rng::Rng;
use super::sampling::{pick, pick_ranked, Pick, Ranked, SamplingParams, Scoring};
use super::schedule::Schedule;
use crate::error::{Error, Result};
use crate::options::{ge, gt, le, Kind, OptionSet, MAX_SAFE_INTEGER};
use crate::{choice_enum, options};

/// Anything that maps a canvas to logits at chosen positions (the encoder, or a test double).
pub trait Denoiser {
    fn vocab_size(&self) -> usize;
    /// Row-major `[positions.len(), vocab_size]`.
    fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>>;
    /// The rows' top `k` allowed ids ranked where the logits are (see [`Ranked`]), for
    /// backends that can avoid handing over whole rows; `None` (the default): use
    /// [`Denoiser::logits`].
    fn ranked(&self, _ids: &[u32], _positions: &[usize], _scoring: &Scoring) -> Result<Option<Ranked>> {
        Ok(None)
    }
}

/// A [`Denoiser`] whose results arrive later: a GPU whose readback the browser hands over
/// asynchronously. [`Session::step_async`] awaits it; a synchronous [`Denoiser`] takes part
/// through [`Now`], so there is one step implementation for both.
#[allow(async_fn_in_trait)]
pub trait AsyncDenoiser {
    fn vocab_size(&self) -> usize;
    async fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>>;
    async fn ranked(&self, ids: &[u32], positions: &[usize], scoring: &Scoring) -> Result<Option<Ranked>>;
}

/// A synchronous [`Denoiser`] as an [`AsyncDenoiser`] that is always ready.
pub struct Now<'a, D: ?Sized>(pub &'a D);

impl<D: Denoiser + ?Sized> AsyncDenoiser for Now<'_, D> {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    async fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.0.logits(ids, positions)
    }
    async fn ranked(&self, ids: &[u32], positions: &[usize], scoring: &Scoring) -> Result<Option<Ranked>> {
        self.0.ranked(ids, positions, scoring)
    }
}

pub use crate::backend::rank::MAX_RANKED;

/// The output of a future that never waits (work over [`Now`]), in one poll and no executor.
pub fn ready<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Waker};
    match std::pin::pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => unreachable!("work that does not wait finished in one poll"),
    }
}

impl Denoiser for crate::model::Model {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }
    fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_at(ids, positions)
    }
}

/// In the browser a step awaits the GPU's readback inside Rust ([`Session::step_async`]); a
/// step ranks on the GPU and reads back each row's top-k, not its logits.
#[cfg(feature = "webgpu")]
impl AsyncDenoiser for crate::model::GpuEncoder {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }
    async fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_at(ids, positions).await
    }
    async fn ranked(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Option<Ranked>> {
        self.ranked_at(ids, positions, s).await.map(Some)
    }
}

/// Natively a [`crate::model::GpuEncoder`] blocks on each step's readback.
#[cfg(all(feature = "webgpu", not(target_arch = "wasm32")))]
impl Denoiser for crate::model::GpuEncoder {
    fn vocab_size(&self) -> usize {
        self.config().vocab_size
    }
    fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_at_blocking(ids, positions)
    }
    fn ranked(&self, ids: &[u32], positions: &[usize], s: &Scoring) -> Result<Option<Ranked>> {
        self.ranked_at_blocking(ids, positions, s).map(Some)
    }
}

choice_enum! {
    /// Which proposals a step commits.
    pub enum Strategy {
        /// Commit a random subset of the proposals (the classic recipe).
        Random = "random",
        /// Commit the most confident proposals (LLaDA's low-confidence remasking).
        Confidence = "confidence",
        /// Commit every proposal whose confidence reaches `threshold`, and at least the
        /// schedule's share (Fast-dLLM); may finish in fewer steps.
        Threshold = "threshold",
        /// Commit where the model is surest whatever was drawn: the largest gap between the
        /// two most likely tokens first (Dream's margin order); the draws stay random.
        Margin = "margin",
        /// Commit where the distribution drawn from has the least entropy first.
        Entropy = "entropy",
    }
}

options! {
    /// How a generation samples: the one definition of these options' names, defaults and
    /// ranges (the CLI's flags, the package's checks and types and the demo derive from it).
    /// The defaults (confidence, 48 steps, repetition penalty 1.3, prior penalty 0.2) write
    /// as varied words as real text (within 0.3 bits) at a judge perplexity below real text's
    /// (`unmask eval --judge`, `training/RESULTS.md`); the classic recipe is
    /// [`SampleOptions::presets`]' second.
    pub struct SampleOptions {
        /// Denoising steps; more steps than tokens to fill is the number of tokens to fill.
        steps: usize = 48, Kind::int(1, 4096);
        /// Which proposals a step commits: random (the classic recipe), confidence (the most
        /// confident first) or threshold (every proposal at least as confident as the threshold).
        strategy: Strategy = Strategy::Confidence, Kind::choice(Strategy::NAMES);
        /// How the mask rate falls over the steps: linear (an equal share per step) or cosine
        /// (few tokens early, more later).
        schedule: Schedule = Schedule::Linear, Kind::choice(Schedule::NAMES);
        /// Confidence a proposal needs under the threshold strategy.
        threshold: f32 = 0.9, Kind::real(gt(0.0), le(1.0));
        /// Fill the masks left to right in blocks of this many tokens (semi-autoregressive),
        /// each block with its share of the steps; by default one block.
        block_length: Option<usize> = None, Kind::int(1, 1 << 16);
        /// Softmax temperature of the proposals.
        temperature: f32 = 1.0, Kind::real(gt(0.0), le(f64::INFINITY));
        /// Penalty for ids already on the canvas, prompt included (transformers'
        /// repetition_penalty: their logits are divided by it, multiplied when negative);
        /// 1 is off, 1.2-1.5 keeps a small model's confidence decoding from repeating a phrase.
        repetition_penalty: f32 = 1.3, Kind::real(gt(0.0), le(f64::INFINITY));
        /// Lowers tokens by how common they are anywhere: each logit less this times the
        /// token's log-probability under the model's prior (its guess for a canvas of masks),
        /// so a common word needs the context to back it (PMI-style decoding; small models
        /// otherwise overuse "the", "of", "be"). One more forward per generation; 0 is off.
        prior_penalty: f32 = 0.2, Kind::real(ge(0.0), le(4.0));
        /// Sample among the k most likely tokens; 0 turns top-k off.
        top_k: usize = 50, Kind::int(0, 1 << 20);
        /// Sample among the most likely tokens whose probabilities add up to p (nucleus).
        top_p: f32 = 0.95, Kind::real(gt(0.0), le(1.0));
        /// The same seed and options give the same text.
        seed: u64 = 0, Kind::int(0, MAX_SAFE_INTEGER);
        /// Top candidates reported per revealed token.
        candidates: usize = 0, Kind::int(0, 64);
        /// Committed tokens masked again per step in the middle half of each block's steps,
        /// the least confident first, and drawn anew by later steps (ReMDM-style remasking:
        /// early mistakes can be corrected); 0 is off.
        redraw: usize = 0, Kind::int(0, 4096);
    }
}

impl SampleOptions {
    /// Settings offered by name (the demo's preset menu): the defaults first, then masked
    /// diffusion's classic recipe, which the defaults replaced by measurement
    /// (`training/RESULTS.md`), so that it stays one choice away.
    pub fn presets() -> Vec<(&'static str, SampleOptions)> {
        let classic = SampleOptions {
            strategy: Strategy::Random,
            steps: 10,
            repetition_penalty: 1.0,
            prior_penalty: 0.0,
            redraw: 0,
            block_length: None,
            ..Self::DEFAULT
        };
        vec![("measured default", Self::DEFAULT), ("classic recipe: random, 10 steps", classic)]
    }

    /// Checks ranges against a canvas with `masks` masked positions.
    pub fn validate(&self, masks: usize) -> Result<()> {
        if masks == 0 {
            return Err(Error::input("nothing to generate: the canvas has no masked position"));
        }
        self.check()
    }
}

/// What one step did. `ids` is the whole canvas after the step.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    /// 1-based.
    pub step: usize,
    pub total: usize,
    pub ids: Vec<u32>,
    /// Positions revealed this step, and their confidences.
    pub revealed: Vec<usize>,
    pub confidence: Vec<f32>,
    /// Per revealed position, the top candidates `(id, probability)`.
    pub candidates: Vec<Vec<(u32, f32)>>,
    /// Positions masked again after this step's reveals (the `redraw` option).
    pub redrawn: Vec<usize>,
    /// Masks left after the step.
    pub masked: usize,
    pub done: bool,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub canvas: Canvas,
    pub steps: usize,
    /// The callback asked to stop before the canvas was complete.
    pub stopped: bool,
}

/// Splits masked positions into left-to-right blocks, each with its number of steps.
fn plan(masked: &[usize], steps: usize, block: Option<usize>) -> Vec<(Vec<usize>, usize)> {
    let len = block.unwrap_or(masked.len()).max(1);
    let blocks: Vec<Vec<usize>> = masked.chunks(len).map(|c| c.to_vec()).collect();
    let n = blocks.len();
    blocks
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let s = (steps / n + usize::from(i < steps % n)).clamp(1, b.len());
            (b, s)
        })
        .collect()
}

/// A generation in progress: one call to [`Session::step`] is one denoising step. The JS
/// facade drives this directly so it can yield (and be cancelled) between steps.
pub struct Session {
    canvas: Canvas,
    banned: Vec<u32>,
    opts: SampleOptions,
    rng: Rng,
    blocks: Vec<(Vec<usize>, usize)>,
    block: usize,
    step_in_block: usize,
    step: usize,
    total: usize,
    left: usize,
    pending: Option<Pending>,
    /// Per canvas position, the confidence its token was committed with (`redraw` masks the
    /// least confident again).
    committed: Vec<f32>,
    /// `prior_penalty` × the model's log-prior per id, from the first step on.
    prior: Option<Vec<f32>>,
}

impl Session {
    pub fn new(canvas: Canvas, banned: &[u32], opts: &SampleOptions) -> Result<Self> {
        let masked = canvas.masked();
        let canvas_len = canvas.ids.len();
        opts.validate(masked.len())?;
        let mut banned = banned.to_vec();
        banned.sort_unstable();
        let blocks = plan(&masked, opts.steps, opts.block_length);
        let total = blocks.iter().map(|b| b.1).sum();
        Ok(Self {
            canvas,
            banned,
            opts: opts.clone(),
            rng: Rng::new(opts.seed),
            blocks,
            block: 0,
            step_in_block: 0,
            step: 0,
            total,
            left: masked.len(),
            pending: None,
            committed: vec![f32::INFINITY; canvas_len],
            prior: None,
        })
    }

    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }

    pub fn into_canvas(self) -> Canvas {
        self.canvas
    }

    /// Steps planned (a threshold run may finish sooner).
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn steps_done(&self) -> usize {
        self.step
    }

    pub fn is_done(&self) -> bool {
        self.left == 0
    }

    /// Runs one denoising step; `None` once the canvas is complete.
    pub fn step<D: Denoiser + ?Sized>(&mut self, model: &D) -> Result<Option<Step>> {
        ready(self.step_async(&Now(model)))
    }

    /// [`Session::step`] with a denoiser whose results arrive later (WebGPU in the browser):
    /// the positions to score, their ranked heads (or whole logit rows), the commit.
    pub async fn step_async<D: AsyncDenoiser>(&mut self, model: &D) -> Result<Option<Step>> {
        if self.opts.prior_penalty > 0.0 && self.prior.is_none() && self.left > 0 {
            self.prior = Some(self.prior_of(model).await?);
        }
        let Some(positions) = self.next_positions() else { return Ok(None) };
        if let Some(scoring) = self.scoring() {
            if let Some(r) = model.ranked(&self.canvas.ids, &positions, &scoring).await? {
                return self.commit_ranked(&r, model.vocab_size()).map(Some);
            }
        }
        let logits = model.logits(&self.canvas.ids, &positions).await?;
        self.commit(&logits, model.vocab_size()).map(Some)
    }

    /// `prior_penalty` × the log of the model's mean distribution over the positions of
    /// this canvas with every non-special token masked: what it guesses knowing nothing.
    async fn prior_of<D: AsyncDenoiser>(&self, model: &D) -> Result<Vec<f32>> {
        let mask = self.canvas.mask_id;
        let ids: Vec<u32> = self.canvas.ids.iter().map(|&t| if t != mask && self.banned.binary_search(&t).is_ok() { t } else { mask }).collect();
        let positions: Vec<usize> = (0..ids.len()).filter(|&i| ids[i] == mask).collect();
        let vocab = model.vocab_size();
        let logits = model.logits(&ids, &positions).await?;
        if vocab == 0 || logits.len() != positions.len() * vocab {
            return Err(Error::model("the model returned logits of the wrong size"));
        }
        let mut mean = vec![0f64; vocab];
        for row in logits.chunks(vocab) {
            let mut p: Vec<f32> = row.iter().map(|&l| if l.is_finite() { l } else { f32::NEG_INFINITY }).collect();
            let z = crate::backend::simd::exp_shifted_row(&mut p);
            if !(z > 0.0 && z.is_finite()) {
                continue;
            }
            for (m, q) in mean.iter_mut().zip(&p) {
                *m += f64::from(*q / z);
            }
        }
        // A floor keeps ids the model never guesses (the specials) finite.
        let n = positions.len().max(1) as f64;
        Ok(mean.iter().map(|m| self.opts.prior_penalty * ((m / n).max(1e-12).ln() as f32)).collect())
    }

    /// The top-k a device ranker should return for this generation's steps, when its
    /// sampling needs no more than that (top-k on and at most [`MAX_RANKED`]; the device
    /// ranks without the prior, so not with `prior_penalty`).
    pub fn ranked_k(&self) -> Option<usize> {
        let ranks = (1..=MAX_RANKED).contains(&self.opts.top_k) && self.opts.prior_penalty == 0.0;
        ranks.then_some(self.opts.top_k)
    }

    /// What a device ranker needs for the pending step (see [`Session::ranked_k`]).
    pub fn scoring(&self) -> Option<Scoring> {
        Some(Scoring {
            k: self.ranked_k()?,
            temperature: self.opts.temperature,
            banned: self.banned.clone(),
            repetition_penalty: self.opts.repetition_penalty,
            seen: self.seen(),
        })
    }

    /// The first half of a step: the canvas positions whose logits the step needs, or `None`
    /// once the canvas is complete. Pass those logits to [`Session::commit`].
    pub fn next_positions(&mut self) -> Option<Vec<usize>> {
        if let Some(p) = &self.pending {
            return Some(p.positions.clone());
        }
        loop {
            let (block, block_steps) = self.blocks.get(self.block)?;
            let open: Vec<usize> =
                block.iter().copied().filter(|&p| self.canvas.ids[p] == self.canvas.mask_id).collect();
            if open.is_empty() || self.step_in_block >= *block_steps {
                self.block += 1;
                self.step_in_block = 0;
                continue;
            }
            let (m0, n, i) = (block.len(), *block_steps, self.step_in_block);
            let target = m0 - self.opts.schedule.remaining_after(m0, i, n);
            let done_in_block = m0 - open.len();
            // The last step of a block commits everything left in it.
            let share = if i + 1 == n { open.len() } else { target.saturating_sub(done_in_block).clamp(1, open.len()) };
            // The random strategy decides where to reveal before seeing any logits, so only
            // those positions go through the MLM head (its largest matmul): ~1/steps of the
            // masks per step instead of all of them.
            let (positions, chosen_first) = if self.opts.strategy == Strategy::Random {
                let mut idx: Vec<usize> = (0..open.len()).collect();
                self.rng.shuffle(&mut idx);
                idx.truncate(share);
                idx.sort_unstable();
                (idx.into_iter().map(|j| open[j]).collect(), true)
            } else {
                (open, false)
            };
            self.pending = Some(Pending { positions: positions.clone(), chosen_first, share });
            return Some(positions);
        }
    }

    /// The second half of a step: samples from `logits` (`[positions × vocab]` for the
    /// positions [`Session::next_positions`] gave) and commits this step's share.
    pub fn commit(&mut self, logits: &[f32], vocab: usize) -> Result<Step> {
        let rows = self.pending_rows()?;
        if vocab == 0 || logits.len() != rows * vocab {
            self.pending = None;
            return Err(Error::model("the model returned logits of the wrong size"));
        }
        let params = self.params();
        let seen = self.seen();
        let (banned, rng) = (&self.banned, &mut self.rng);
        let prior = self.prior.as_deref().unwrap_or(&[]);
        let picks = logits.chunks(vocab).map(|row| pick(row, banned, &seen, prior, &params, rng)).collect();
        self.commit_picks(picks)
    }

    /// [`Session::commit`] from the rows' ranked heads ([`Session::ranked_k`] of them each).
    pub fn commit_ranked(&mut self, r: &Ranked, vocab: usize) -> Result<Step> {
        let rows = self.pending_rows()?;
        if Some(r.k) != self.ranked_k().map(|k| k.min(vocab)) || !r.check(rows, vocab) {
            self.pending = None;
            return Err(Error::model("the device returned a ranking of the wrong shape"));
        }
        let params = self.params();
        let (banned, rng) = (&self.banned, &mut self.rng);
        let picks = (0..rows)
            .map(|i| {
                let span = i * r.k..(i + 1) * r.k;
                pick_ranked(&r.ids[span.clone()], &r.scaled[span], r.log_z[i], vocab, banned, &params, rng)
            })
            .collect();
        self.commit_picks(picks)
    }

    fn pending_rows(&self) -> Result<usize> {
        match &self.pending {
            Some(p) => Ok(p.positions.len()),
            None => Err(Error::input("no step is pending: call next_positions first")),
        }
    }

    /// The ids on the canvas (sorted, unique) when a repetition penalty needs them.
    fn seen(&self) -> Vec<u32> {
        if self.opts.repetition_penalty == 1.0 {
            return Vec::new();
        }
        let mut ids: Vec<u32> = self.canvas.ids.iter().copied().filter(|t| self.banned.binary_search(t).is_err()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.opts.temperature,
            repetition_penalty: self.opts.repetition_penalty,
            top_k: self.opts.top_k,
            top_p: self.opts.top_p,
            candidates: self.opts.candidates,
        }
    }

    /// After a step of the middle half of its block's steps (never in the last quarter, nor
    /// the block's last step, so later steps draw the tokens anew), masks again up to `redraw`
    /// of the block's committed tokens, the least confident first, leaving those just revealed.
    fn redraw(&mut self, revealed: &[usize]) -> Vec<usize> {
        let Some((block, n)) = self.blocks.get(self.block) else { return Vec::new() };
        let i = self.step_in_block;
        if self.opts.redraw == 0 || i < n / 4 || i >= n / 2 + n / 4 || i + 1 >= *n {
            return Vec::new();
        }
        let mask = self.canvas.mask_id;
        let mut done: Vec<usize> = block.iter().copied().filter(|p| self.canvas.ids[*p] != mask && !revealed.contains(p)).collect();
        done.sort_by(|a, b| self.committed[*a].total_cmp(&self.committed[*b]).then(a.cmp(b)));
        done.truncate(self.opts.redraw);
        done.sort_unstable();
        for &p in &done {
            self.canvas.ids[p] = mask;
        }
        done
    }

    fn commit_picks(&mut self, picks: Vec<Pick>) -> Result<Step> {
        let Some(Pending { positions, chosen_first, share }) = self.pending.take() else {
            return Err(Error::input("no step is pending: call next_positions first"));
        };
        // Indices into `picks`/`positions` to commit, sorted by position.
        let chosen: Vec<usize> = if chosen_first { (0..picks.len()).collect() } else { choose(&self.opts, &picks, share) };
        let mut s = Step {
            step: self.step + 1,
            total: self.total,
            ids: Vec::new(),
            revealed: Vec::with_capacity(chosen.len()),
            confidence: Vec::with_capacity(chosen.len()),
            candidates: Vec::new(),
            redrawn: Vec::new(),
            masked: 0,
            done: false,
        };
        for j in chosen {
            self.canvas.ids[positions[j]] = picks[j].token;
            self.committed[positions[j]] = picks[j].confidence;
            s.revealed.push(positions[j]);
            s.confidence.push(picks[j].confidence);
            if self.opts.candidates > 0 {
                s.candidates.push(picks[j].candidates.clone());
            }
        }
        self.left -= s.revealed.len();
        s.redrawn = self.redraw(&s.revealed);
        self.left += s.redrawn.len();
        self.step += 1;
        self.step_in_block += 1;
        s.masked = self.left;
        s.done = self.left == 0;
        s.ids = self.canvas.ids.clone();
        Ok(s)
    }
}

/// A step between [`Session::next_positions`] and [`Session::commit`].
struct Pending {
    positions: Vec<usize>,
    /// The random strategy already chose: commit every scored position.
    chosen_first: bool,
    share: usize,
}

/// Denoises `canvas` to the end. `on_step` sees every step and returns `false` to stop.
pub fn generate<D: Denoiser + ?Sized>(
    model: &D,
    canvas: Canvas,
    banned: &[u32],
    opts: &SampleOptions,
    on_step: impl FnMut(&Step) -> bool,
) -> Result<Outcome> {
    run(model, Session::new(canvas, banned, opts)?, on_step)
}

/// Runs `session` to the end. `on_step` sees every step and returns `false` to stop.
pub fn run<D: Denoiser + ?Sized>(model: &D, mut session: Session, mut on_step: impl FnMut(&Step) -> bool) -> Result<Outcome> {
    while let Some(s) = session.step(model)? {
        if !on_step(&s) && !s.done {
            let steps = session.steps_done();
            return Ok(Outcome { canvas: session.into_canvas(), steps, stopped: true });
        }
    }
    let steps = session.steps_done();
    Ok(Outcome { canvas: session.into_canvas(), steps, stopped: false })
}

/// Indices into `picks` to commit this step, sorted by position (strategies that look at
/// the predictions; the random one chooses before scoring, in `Session::step`).
fn choose(opts: &SampleOptions, picks: &[Pick], share: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..picks.len()).collect();
    let key = |p: &Pick| match opts.strategy {
        Strategy::Margin => p.margin,
        Strategy::Entropy => p.neg_entropy,
        _ => p.confidence,
    };
    idx.sort_by(|a, b| key(&picks[*b]).total_cmp(&key(&picks[*a])));
    let keep = match opts.strategy {
        Strategy::Threshold => idx.iter().take_while(|&&j| picks[j].confidence >= opts.threshold).count().max(share),
        _ => share,
    };
    idx.truncate(keep);
    idx.sort_unstable();
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_strategy_commits_by_its_own_measure() {
        // Three proposals whose orders differ by measure: 0 has the likeliest draw, 1 the
        // largest margin, 2 the least entropy.
        let pick = |confidence, margin, neg_entropy| Pick { token: 7, confidence, margin, neg_entropy, candidates: vec![] };
        let picks = [pick(0.9, 0.1, -2.0), pick(0.2, 0.6, -1.5), pick(0.5, 0.3, -0.5)];
        for (strategy, first) in [(Strategy::Confidence, 0), (Strategy::Threshold, 0), (Strategy::Margin, 1), (Strategy::Entropy, 2)] {
            let opts = SampleOptions { strategy, threshold: 1.0, ..SampleOptions::DEFAULT };
            assert_eq!(choose(&opts, &picks, 1), [first], "{strategy}");
        }
    }
}
