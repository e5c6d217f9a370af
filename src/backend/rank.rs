//! Ranking a row of logits: its top-k allowed ids and log-normaliser, the part of the
//! distribution a sampler needs. A device that ranks where the logits are hands over a few
//! hundred bytes per row instead of the vocabulary; [`rank`] is the CPU reference it is
//! tested against.

/// The largest top-k a device ranker serves (its per-row workgroup sorts at most this many).
pub const MAX_RANKED: usize = 256;

/// The head of each row's distribution as a backend that ranks on its device returns it
/// (WebGPU: a few hundred bytes per row read back instead of the whole vocabulary): per row
/// the `k` best allowed ids by temperature-scaled logit, descending, with those scaled
/// logits, and the row's log-normaliser `ln Σ exp(scaled)` over the allowed ids (NaN when
/// no id is allowed).
#[derive(Debug, Clone, Default)]
pub struct Ranked {
    pub k: usize,
    pub ids: Vec<u32>,
    pub scaled: Vec<f32>,
    pub log_z: Vec<f32>,
}

impl Ranked {
    pub fn rows(&self) -> usize {
        self.log_z.len()
    }

    /// Rows from flat words, `2k + 1` per row: `k` ids, `k` scaled logits (f32 bits), the
    /// log-normaliser (f32 bits), as the WebGPU `top_k` kernel writes them; `None` when
    /// `words` is not whole rows.
    pub fn from_words(words: &[u32], k: usize) -> Option<Self> {
        let stride = 2 * k + 1;
        if k == 0 || words.len() % stride != 0 {
            return None;
        }
        let mut r = Ranked { k, ..Default::default() };
        for row in words.chunks_exact(stride) {
            r.ids.extend_from_slice(&row[..k]);
            r.scaled.extend(row[k..2 * k].iter().map(|&b| f32::from_bits(b)));
            r.log_z.push(f32::from_bits(row[2 * k]));
        }
        Some(r)
    }

    /// Checks the shape against `rows` rows of a `vocab`-sized model.
    pub fn check(&self, rows: usize, vocab: usize) -> bool {
        self.k >= 1
            && self.log_z.len() == rows
            && self.ids.len() == rows * self.k
            && self.scaled.len() == rows * self.k
            && self.ids.iter().all(|&t| (t as usize) < vocab)
    }
}

/// `transformers`' repetition penalty on one logit.
pub fn penalized(l: f32, penalty: f32) -> f32 {
    if l > 0.0 { l / penalty } else { l * penalty }
}

/// What a device ranker needs to rank a step's rows as [`pick`] would see them.
#[derive(Debug, Clone)]
pub struct Scoring {
    /// How many ids per row (the sampler's top-k).
    pub k: usize,
    pub temperature: f32,
    /// Ids never sampled (sorted).
    pub banned: Vec<u32>,
    pub repetition_penalty: f32,
    /// Ids that get the penalty (sorted; empty when it is 1).
    pub seen: Vec<u32>,
}

/// The CPU reference of what a device ranker returns for `[rows × vocab]` logits: per row
/// the `k` best allowed ids (banned and non-finite logits excluded; excluded ids fill the
/// tail when fewer than `k` are allowed, with scaled logit −∞), their logits (penalised when
/// seen) divided by the temperature, and the log-normaliser.
pub fn rank(logits: &[f32], vocab: usize, s: &Scoring) -> Ranked {
    let k = s.k.min(vocab).max(1);
    let mut out = Ranked { k, ..Default::default() };
    let inv_t = 1.0 / s.temperature;
    for row in logits.chunks(vocab) {
        let scaled: Vec<f32> = row
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let i = i as u32;
                if !l.is_finite() || s.banned.binary_search(&i).is_ok() {
                    f32::NEG_INFINITY
                } else if s.repetition_penalty != 1.0 && s.seen.binary_search(&i).is_ok() {
                    penalized(l, s.repetition_penalty) * inv_t
                } else {
                    l * inv_t
                }
            })
            .collect();
        let mut order: Vec<u32> = (0..vocab as u32).collect();
        order.sort_by(|a, b| scaled[*b as usize].total_cmp(&scaled[*a as usize]));
        let m = scaled.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f64 = scaled.iter().map(|&v| ((v - m) as f64).exp()).sum();
        out.log_z.push(if m.is_finite() { m + z.ln() as f32 } else { f32::NAN });
        out.ids.extend_from_slice(&order[..k]);
        out.scaled.extend(order[..k].iter().map(|&t| scaled[t as usize]));
    }
    out
}

