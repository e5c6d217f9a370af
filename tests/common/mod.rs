#![allow(dead_code)]
use std::path::PathBuf;

use unmask::diffusion::Denoiser;
use unmask::Result;

pub const FAMILIES: [&str; 4] = ["bert", "roberta", "distilroberta", "roberta-prelayernorm"];

pub fn fixture(family: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(family)
}

/// A denoiser whose logits depend on the whole canvas (so strategies and seeds matter) without
/// a model: logit[v] = sin(v · (1 + position) + Σ ids).
pub struct Mock {
    pub vocab: usize,
}

impl Denoiser for Mock {
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn logits(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        let s: f32 = ids.iter().map(|&i| i as f32).sum::<f32>() * 0.01;
        let mut out = Vec::with_capacity(positions.len() * self.vocab);
        for &p in positions {
            for v in 0..self.vocab {
                out.push(3.0 * ((v as f32) * (1.0 + p as f32) * 0.37 + s).sin());
            }
        }
        Ok(out)
    }
}
