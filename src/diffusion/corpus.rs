//! A training corpus: documents tokenized, split train/validation by document, and packed
//! into fixed-length windows `<s> … </s>` with `</s>` between documents.

use crate::rng::Rng;
use crate::error::{Error, Result};
use crate::model::TextCodec;

pub struct Corpus {
    /// Token streams: documents joined with `</s>`.
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    /// Whether `valid` holds documents the model never trains on (false for one-document
    /// corpora, where validation reuses the training text).
    pub held_out: bool,
    pub documents: usize,
    /// The first words of the first training document: what a run's samples continue, so they
    /// show what the model learns (a held-out document's start shows only what it cannot know).
    pub sample_prompt: String,
}

/// Words of [`Corpus::sample_prompt`].
const SAMPLE_PROMPT_WORDS: usize = 3;

/// Splits text into documents at blank lines (after normalising line ends).
pub fn split_documents(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n")
        .split("\n\n")
        .map(|d| d.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|d| !d.is_empty())
        .collect()
}

impl Corpus {
    /// `valid_fraction` of the documents (at least one when there are two or more) go to
    /// validation, chosen with `seed`.
    pub fn build(codec: &TextCodec, docs: &[String], valid_fraction: f64, seed: u64, seq_len: usize) -> Result<Self> {
        let docs: Vec<&String> = docs.iter().filter(|d| !d.trim().is_empty()).collect();
        if docs.is_empty() {
            return Err(Error::Training("the corpus is empty".into()));
        }
        let mut order: Vec<usize> = (0..docs.len()).collect();
        Rng::new(seed ^ 0x5eed).shuffle(&mut order);
        // valid_fraction 0 means "evaluate on the training text" (as `unmask eval` does).
        let n_valid = if docs.len() >= 2 && valid_fraction > 0.0 {
            ((docs.len() as f64 * valid_fraction).round() as usize).clamp(1, docs.len() - 1)
        } else {
            0
        };
        let (valid_idx, train_idx) = order.split_at(n_valid);
        let stream = |idx: &[usize]| -> Result<Vec<u32>> {
            let mut sorted = idx.to_vec();
            sorted.sort_unstable();
            let mut out = Vec::new();
            for &i in &sorted {
                out.extend(codec.encode(docs[i])?);
                out.push(codec.eos_id);
            }
            Ok(out)
        };
        let train = stream(train_idx)?;
        let first = train_idx.iter().min().map_or(docs[0], |&i| docs[i]);
        let sample_prompt = first.split_whitespace().take(SAMPLE_PROMPT_WORDS).collect::<Vec<_>>().join(" ");
        let (valid, held_out) = if n_valid > 0 { (stream(valid_idx)?, true) } else { (train.clone(), false) };
        let body = seq_len.saturating_sub(2);
        if train.len() < body {
            return Err(Error::Training(format!(
                "the corpus has {} tokens, fewer than one training sequence of {body}: paste more text or lower the sequence length",
                train.len()
            )));
        }
        Ok(Self { train, valid, held_out, documents: docs.len(), sample_prompt })
    }
}

/// A window of `seq_len` tokens: `<s>`, `seq_len - 2` tokens of `stream` from `start`
/// (wrapping around), `</s>`.
pub fn window(codec: &TextCodec, stream: &[u32], start: usize, seq_len: usize) -> Vec<u32> {
    let body = seq_len - 2;
    let mut w = Vec::with_capacity(seq_len);
    w.push(codec.bos_id);
    w.extend((0..body).map(|k| stream[(start + k) % stream.len()]));
    w.push(codec.eos_id);
    w
}

/// Shannon entropy (bits) of the token distribution in `ids`: collapsing samples
/// ("the the the") score low.
pub fn unigram_entropy(ids: &[u32]) -> f64 {
    let mut counts: std::collections::HashMap<u32, usize> = Default::default();
    for &i in ids {
        *counts.entry(i).or_default() += 1;
    }
    let n = ids.len().max(1) as f64;
    -counts.values().map(|&c| {
        let p = c as f64 / n;
        p * p.log2()
    }).sum::<f64>()
}

/// Reads corpus files as UTF-8 text and splits them into documents.
#[cfg(not(target_arch = "wasm32"))]
pub fn read_documents(paths: &[std::path::PathBuf]) -> Result<Vec<String>> {
    let mut docs = Vec::new();
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| Error::Training(format!("cannot read {}: {e}", p.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::Training(format!("{} is not UTF-8 text (binary file?)", p.display())))?;
        docs.extend(split_documents(&text));
    }
    if docs.is_empty() {
        return Err(Error::Training("the corpus is empty".into()));
    }
    Ok(docs)
}
