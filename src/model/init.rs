//! Fresh weights for a configuration (training from scratch, a fresh MLM head on a pretrained
//! body, and test models of any shape).

use candle_core::{Device, Tensor};

use super::config::ModelConfig;
use super::encoder::Names;
use crate::rng::Rng;
use crate::error::Result;

/// Every tensor name of a family's `*ForMaskedLM` checkpoint with its shape (decoder tied, so
/// not listed), in a stable order.
pub fn tensor_shapes(cfg: &ModelConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let n = Names::new(cfg.family()?);
    let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
    let mut out: Vec<(String, Vec<usize>)> = vec![
        (n.emb("word_embeddings.weight"), vec![v, h]),
        (n.emb("position_embeddings.weight"), vec![cfg.max_position_embeddings, h]),
        (n.emb("token_type_embeddings.weight"), vec![cfg.type_vocab_size.max(1), h]),
        (n.emb("LayerNorm.weight"), vec![h]),
        (n.emb("LayerNorm.bias"), vec![h]),
    ];
    let lin = |out: &mut Vec<(String, Vec<usize>)>, name: String, o: usize, inp: usize| {
        out.push((format!("{name}.weight"), vec![o, inp]));
        out.push((format!("{name}.bias"), vec![o]));
    };
    let norm = |out: &mut Vec<(String, Vec<usize>)>, name: String| {
        out.push((format!("{name}.weight"), vec![h]));
        out.push((format!("{name}.bias"), vec![h]));
    };
    for l in 0..cfg.num_hidden_layers {
        for p in ["query", "key", "value"] {
            lin(&mut out, n.layer(l, &format!("attention.self.{p}")), h, h);
        }
        lin(&mut out, n.layer(l, "attention.output.dense"), h, h);
        norm(&mut out, n.attn_norm(l));
        lin(&mut out, n.layer(l, "intermediate.dense"), i, h);
        lin(&mut out, n.layer(l, "output.dense"), h, i);
        norm(&mut out, n.ffn_norm(l));
    }
    if let Some(f) = n.final_norm() {
        norm(&mut out, f);
    }
    lin(&mut out, n.head_dense().to_string(), h, h);
    norm(&mut out, n.head_norm().to_string());
    out.push((n.head_bias_candidates()[0].clone(), vec![v]));
    Ok(out)
}

/// Standard normal via Box–Muller from our seeded generator.
fn normal(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        let u1 = rng.next_f32().max(1e-7);
        let u2 = rng.next_f32();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let th = std::f32::consts::TAU * u2;
        v.push(r * th.cos());
        if v.len() < n {
            v.push(r * th.sin());
        }
    }
    v
}

/// BERT-style initialisation: normal(0, std) matrices, zero biases, unit norm gains.
pub fn fresh_tensor(name: &str, shape: &[usize], std: f32, rng: &mut Rng) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let is_norm = name.contains("LayerNorm") || name.contains("layer_norm");
    let data = if shape.len() >= 2 {
        normal(rng, n, std)
    } else if is_norm && name.ends_with("weight") {
        vec![1.0; n]
    } else {
        vec![0.0; n]
    };
    Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
}

/// All tensors of a fresh model.
pub fn fresh_tensors(cfg: &ModelConfig, seed: u64, std: f32) -> Result<Vec<(String, Tensor)>> {
    let mut rng = Rng::new(seed);
    tensor_shapes(cfg)?
        .into_iter()
        .map(|(n, s)| Ok((n.clone(), fresh_tensor(&n, &s, std, &mut rng)?)))
        .collect()
}
