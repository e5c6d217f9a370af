//! A judge of generated text: an autoregressive language model in a GGUF file (a quantized
//! Llama such as SmolLM2-135M, through `candle-transformers`), and the sample statistics that
//! go beside its perplexity. Judge perplexity alone rewards repetition, so it is reported with
//! word entropy and distinct-n, each also for real text after the same prompts.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};

pub struct Judge {
    model: ModelWeights,
    tokenizer: Tokenizer,
    bos: Option<u32>,
    /// The model's context: longer samples are cut to it.
    context: usize,
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    Error::model(format!("judge {}: {what}", path.display()))
}

/// A byte-level BPE tokenizer from a GGUF file's own vocabulary and merges (`gpt2` models).
fn gguf_tokenizer(ct: &gguf_file::Content, path: &Path) -> Result<Tokenizer> {
    let strings = |key: &str| -> Result<Vec<String>> {
        let v = ct.metadata.get(key).ok_or_else(|| bad(path, format!("no `{key}` in the metadata")))?;
        let arr = v.to_vec().map_err(|e| bad(path, format!("`{key}`: {e}")))?;
        arr.iter().map(|s| s.to_string().cloned().map_err(|e| bad(path, format!("`{key}`: {e}")))).collect()
    };
    match ct.metadata.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()) {
        Some(m) if m == "gpt2" => {}
        other => return Err(bad(path, format!("tokenizer.ggml.model is {other:?}; the judge reads byte-level BPE (`gpt2`)"))),
    }
    let vocab: tokenizers::models::bpe::Vocab = strings("tokenizer.ggml.tokens")?.into_iter().zip(0u32..).collect();
    let merges = strings("tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| m.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())).ok_or_else(|| bad(path, format!("merge `{m}`"))))
        .collect::<Result<Vec<_>>>()?;
    let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().map_err(|e| bad(path, e))?;
    let mut tok = Tokenizer::new(bpe);
    tok.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tok.with_decoder(Some(ByteLevel::default()));
    Ok(tok)
}

impl Judge {
    pub fn load(path: &Path) -> Result<Self> {
        // candle's quantized matmul on the CPU scores SmolLM2's Q4_1 weights 4× slower than its
        // f32 GEMM on the same weights dequantized (47 s against 11.5 s for 20 samples on 2
        // cores), for a 0.3 % different perplexity; the switch is candle's own, read when a
        // thread first builds a quantized matmul (ours never do: the encoder keeps its own
        // f32 or integer weights), so set it before the model is built unless the caller has.
        if std::env::var_os("CANDLE_DEQUANTIZE_ALL").is_none() {
            std::env::set_var("CANDLE_DEQUANTIZE_ALL", "1");
        }
        let mut f = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
        let ct = gguf_file::Content::read(&mut f).map_err(|e| bad(path, e))?;
        match ct.metadata.get("general.architecture").and_then(|v| v.to_string().ok()) {
            Some(a) if a == "llama" => {}
            other => return Err(bad(path, format!("architecture {other:?}; the judge runs `llama` models"))),
        }
        let tokenizer = gguf_tokenizer(&ct, path)?;
        let bos = ct.metadata.get("tokenizer.ggml.bos_token_id").and_then(|v| v.to_u32().ok());
        let context = ct.metadata.get("llama.context_length").and_then(|v| v.to_u32().ok()).map_or(2048, |c| c as usize);
        let model = ModelWeights::from_gguf(ct, &mut f, &Device::Cpu).map_err(|e| bad(path, e))?;
        Ok(Judge { model, tokenizer, bos, context })
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.tokenizer.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The next-token log-probabilities of `ids` (BOS first when the model has one): the
    /// summed negative log-likelihood of every token after the first, and how many.
    pub fn nll_ids(&mut self, ids: &[u32]) -> Result<(f64, usize)> {
        Ok(self.nll_batch(&[ids.to_vec()])?[0])
    }

    /// [`Judge::nll_ids`] of several sequences at once: one token position of every sequence
    /// per forward through the KV cache (the model gives only the last position's logits),
    /// so each forward is a matrix product over the batch instead of a vector product (a
    /// table of 40 samples scores ~20× faster than one by one). Shorter sequences are padded
    /// at the end, which a causal model's earlier positions never see.
    pub fn nll_batch(&mut self, seqs: &[Vec<u32>]) -> Result<Vec<(f64, usize)>> {
        let seqs: Vec<Vec<u32>> = seqs
            .iter()
            .map(|ids| {
                let mut s: Vec<u32> = self.bos.into_iter().chain(ids.iter().copied()).collect();
                s.truncate(self.context);
                s
            })
            .collect();
        let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut out: Vec<(f64, usize)> = seqs.iter().map(|s| (0.0, s.len().saturating_sub(1))).collect();
        if longest < 2 {
            return Ok(out);
        }
        self.model.clear_kv_cache();
        for pos in 0..longest - 1 {
            let column: Vec<u32> = seqs.iter().map(|s| s.get(pos).copied().unwrap_or(0)).collect();
            let x = Tensor::new(column.as_slice(), &Device::Cpu)?.unsqueeze(1)?;
            let logits = self.model.forward(&x, pos)?.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
            for ((s, row), o) in seqs.iter().zip(&logits).zip(out.iter_mut()) {
                if let Some(&next) = s.get(pos + 1) {
                    o.0 -= log_softmax_at(row, next as usize);
                }
            }
        }
        Ok(out)
    }

    /// [`Judge::nll_ids`] without the cache: each prefix scored from scratch (for tests).
    pub fn nll_ids_uncached(&mut self, ids: &[u32]) -> Result<(f64, usize)> {
        let seq: Vec<u32> = self.bos.into_iter().chain(ids.iter().copied()).collect();
        let mut sum = 0.0;
        for t in 1..seq.len() {
            self.model.clear_kv_cache();
            let x = Tensor::new(&seq[..t], &Device::Cpu)?.unsqueeze(0)?;
            let logits = self.model.forward(&x, 0)?.squeeze(0)?;
            sum -= log_softmax_at(&logits.to_vec1::<f32>()?, seq[t] as usize);
        }
        Ok((sum, seq.len().saturating_sub(1)))
    }

    /// Pooled (token-weighted) perplexity of `texts`, scored in batches.
    pub fn perplexity(&mut self, texts: &[String]) -> Result<f64> {
        let ids = texts.iter().map(|t| self.encode(t)).collect::<Result<Vec<_>>>()?;
        let (mut sum, mut n) = (0.0, 0);
        for chunk in ids.chunks(64) {
            for (s, k) in self.nll_batch(chunk)? {
                sum += s;
                n += k;
            }
        }
        if n == 0 {
            return Err(Error::input("nothing to judge: the samples are empty"));
        }
        Ok((sum / n as f64).exp())
    }
}

fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let z: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
    row[i] as f64 - max - z.ln()
}

/// Shannon entropy (bits) of the whitespace words of all `texts` pooled.
pub fn word_entropy(texts: &[String]) -> f64 {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for t in texts {
        for w in t.split_whitespace() {
            *counts.entry(w).or_default() += 1;
        }
    }
    let n: usize = counts.values().sum();
    counts.values().map(|&c| c as f64 / n as f64).map(|p| -p * p.log2()).sum()
}

/// Distinct word n-grams over all n-grams of `texts` (each text's own n-grams, pooled).
pub fn distinct_n(texts: &[String], n: usize) -> f64 {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0usize;
    for t in texts {
        let words: Vec<&str> = t.split_whitespace().collect();
        for g in words.windows(n) {
            seen.insert(g.to_vec());
            total += 1;
        }
    }
    if total == 0 {
        0.0
    } else {
        seen.len() as f64 / total as f64
    }
}
