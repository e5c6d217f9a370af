//! The encoder + MLM head of BERT, RoBERTa and roberta-prelayernorm, loaded onto the CPU.
//!
//! Layouts differ only in tensor names, the position offset, and where layer norm sits;
//! those differences are resolved once at load time, so the forward pass is one code path
//! ([`super::forward`]), which the GPU runs too.

use std::sync::Arc;

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use super::config::{Activation, Family, ModelConfig};
use super::forward::{self, Layer, Weights, Wiring, LAYER_LINEARS};
use super::weights::{Stored, WeightStore};
use crate::backend::cpu::{self, Embeddings, Linear, Norm};
use crate::backend::{par, Kernels};
use crate::error::{Error, Result};

fn stored_quantized(store: &WeightStore, name: &str) -> bool {
    store.dtype_of(name).is_some_and(|d| !matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16))
}

fn load_linear(store: &WeightStore, name: &str, out: usize, inp: usize) -> Result<Linear> {
    let wname = format!("{name}.weight");
    let bias = Some(store.dense(&format!("{name}.bias"), &[out])?);
    let quantized = stored_quantized(store, &wname);
    match store.lookup(&wname, &[out, inp])? {
        Stored::Dense(t) => Linear::new(t.clone(), bias, quantized),
        Stored::Quant(q) => Ok(Linear::from_blocks(Arc::clone(q), bias, (out, inp), quantized)),
    }
}

fn load_norm(store: &WeightStore, name: &str, h: usize, eps: f64) -> Result<Norm> {
    // Old BERT checkpoints name the parameters gamma/beta.
    let pick = |new: &str, old: &str| {
        let n = format!("{name}.{new}");
        if store.contains(&n) {
            n
        } else if store.contains(&format!("{name}.{old}")) {
            format!("{name}.{old}")
        } else {
            n
        }
    };
    Ok(Norm { weight: store.dense(&pick("weight", "gamma"), &[h])?, bias: store.dense(&pick("bias", "beta"), &[h])?, eps })
}

/// The CPU's weights of an encoder.
pub type CpuWeights = Weights<Linear, Norm, Embeddings>;

pub struct Encoder {
    pub config: ModelConfig,
    pub family: Family,
    pub wiring: Wiring,
    pub weights: CpuWeights,
    /// Which CPU kernels inference and training use.
    pub kernels: Kernels,
}

/// What every backend's `logits_at` accepts: a non-empty sequence of in-vocabulary ids that
/// fits the context, and positions inside it.
pub fn check_sequence(config: &ModelConfig, ids: &[u32], positions: &[usize]) -> Result<()> {
    if ids.is_empty() {
        return Err(Error::input("the sequence is empty"));
    }
    if ids.len() > config.max_sequence_len() {
        return Err(Error::input(format!(
            "sequence of {} tokens exceeds the model's context of {}",
            ids.len(),
            config.max_sequence_len()
        )));
    }
    if let Some(&bad) = ids.iter().find(|&&i| i as usize >= config.vocab_size) {
        return Err(Error::input(format!("token id {bad} is outside the vocabulary of {}", config.vocab_size)));
    }
    if positions.iter().any(|&p| p >= ids.len()) {
        return Err(Error::input("position outside the sequence"));
    }
    Ok(())
}

/// The tensor names of one family, so loading and exporting agree.
pub struct Names {
    pub p: &'static str,
    pub family: Family,
}

impl Names {
    pub fn new(family: Family) -> Self {
        Self { p: family.prefix(), family }
    }
    pub fn emb(&self, what: &str) -> String {
        format!("{}.embeddings.{what}", self.p)
    }
    pub fn layer(&self, i: usize, what: &str) -> String {
        format!("{}.encoder.layer.{i}.{what}", self.p)
    }
    pub fn attn_norm(&self, i: usize) -> String {
        match self.family {
            Family::RobertaPreLayerNorm => self.layer(i, "attention.LayerNorm"),
            _ => self.layer(i, "attention.output.LayerNorm"),
        }
    }
    pub fn ffn_norm(&self, i: usize) -> String {
        match self.family {
            Family::RobertaPreLayerNorm => self.layer(i, "intermediate.LayerNorm"),
            _ => self.layer(i, "output.LayerNorm"),
        }
    }
    pub fn final_norm(&self) -> Option<String> {
        self.family.pre_layer_norm().then(|| format!("{}.LayerNorm", self.p))
    }
    pub fn head_dense(&self) -> &'static str {
        match self.family {
            Family::Bert => "cls.predictions.transform.dense",
            _ => "lm_head.dense",
        }
    }
    pub fn head_norm(&self) -> &'static str {
        match self.family {
            Family::Bert => "cls.predictions.transform.LayerNorm",
            _ => "lm_head.layer_norm",
        }
    }
    pub fn decoder(&self) -> &'static str {
        match self.family {
            Family::Bert => "cls.predictions.decoder",
            _ => "lm_head.decoder",
        }
    }
    /// The output bias; `transformers` shares it between two names and saves one of them.
    pub fn head_bias_candidates(&self) -> [String; 2] {
        match self.family {
            Family::Bert => ["cls.predictions.bias".into(), "cls.predictions.decoder.bias".into()],
            _ => ["lm_head.bias".into(), "lm_head.decoder.bias".into()],
        }
    }
}

impl Encoder {
    pub fn load(config: &ModelConfig, store: &WeightStore) -> Result<Self> {
        config.validate()?;
        let family = config.family()?;
        let n = Names::new(family);
        let (h, i, v) = (config.hidden_size, config.intermediate_size, config.vocab_size);
        let eps = config.layer_norm_eps;
        let word_name = n.emb("word_embeddings.weight");
        let word = store.dense(&word_name, &[v, h])?;
        let position = store.dense(&n.emb("position_embeddings.weight"), &[config.max_position_embeddings, h])?;
        let tt_name = n.emb("token_type_embeddings.weight");
        let token_type = if config.type_vocab_size > 0 && store.contains(&tt_name) {
            Some(store.dense(&tt_name, &[config.type_vocab_size, h])?.narrow(0, 0, 1)?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            let [q, k, v, o, up, down] = LAYER_LINEARS.map(|what| n.layer(l, what));
            layers.push(Layer {
                query: load_linear(store, &q, h, h)?,
                key: load_linear(store, &k, h, h)?,
                value: load_linear(store, &v, h, h)?,
                attn_out: load_linear(store, &o, h, h)?,
                attn_norm: load_norm(store, &n.attn_norm(l), h, eps)?,
                intermediate: load_linear(store, &up, i, h)?,
                output: load_linear(store, &down, h, i)?,
                ffn_norm: load_norm(store, &n.ffn_norm(l), h, eps)?,
            });
        }
        let final_norm = match n.final_norm() {
            Some(name) => Some(load_norm(store, &name, h, eps)?),
            None => None,
        };
        let dec_w = format!("{}.weight", n.decoder());
        // Tied decoders share the embedding table's f32 storage (no second copy).
        let (weight, decoder_name) = if store.contains(&dec_w) {
            (store.dense(&dec_w, &[v, h])?, dec_w)
        } else {
            (word.clone(), word_name.clone())
        };
        let [b1, b2] = n.head_bias_candidates();
        let bias_name = if store.contains(&b1) { b1 } else { b2 };
        let bias = store.dense(&bias_name, &[v]).map_err(|_| {
            Error::tensor(n.head_bias_candidates()[0].clone(), "missing from the checkpoint (no MLM head?)")
        })?;
        let weights = Weights {
            embed_norm: load_norm(store, &n.emb("LayerNorm"), h, eps)?,
            embeddings: Embeddings { word, position, token_type },
            layers,
            final_norm,
            head_dense: load_linear(store, n.head_dense(), h, h)?,
            head_norm: load_norm(store, n.head_norm(), h, eps)?,
            decoder: Linear::new(weight, Some(bias), stored_quantized(store, &decoder_name))?,
        };
        let wiring = Wiring {
            pre_ln: family.pre_layer_norm(),
            heads: config.num_attention_heads,
            act: config.activation()?,
            head_act: match family {
                Family::Bert => config.activation()?,
                _ => Activation::Gelu,
            },
            position_offset: config.position_offset(),
        };
        Ok(Self { config: config.clone(), family, wiring, weights, kernels: Kernels::default() })
    }

    pub fn device(&self) -> &Device {
        self.weights.embeddings.word.device()
    }

    /// Ids `[batch, seq]` (u32) as the flat list and batch size the forward takes, checked
    /// against the context. No padding: every sequence in a batch has the same length, as
    /// both generation and packed training produce.
    fn batch_of(&self, ids: &Tensor) -> Result<(Vec<u32>, usize)> {
        let (b, t) = ids.dims2()?;
        if t + self.config.position_offset() > self.config.max_position_embeddings {
            return Err(Error::input(format!(
                "sequence of {t} tokens exceeds the model's context of {}",
                self.config.max_sequence_len()
            )));
        }
        Ok((ids.flatten_all()?.to_vec1::<u32>()?, b))
    }

    /// Inference logits for every position: `[batch, seq, vocab]` for ids `[batch, seq]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (flat, b) = self.batch_of(ids)?;
        par::run(|| {
            let ops = &mut cpu::Infer { kernels: self.kernels };
            let x = forward::hidden(ops, &self.weights, &self.wiring, &flat, b, None)?;
            forward::head(ops, &self.weights, &self.wiring, &x)
        })
    }

    /// [`Encoder::forward`] through differentiable ops only (what training runs).
    pub fn forward_train(&self, ids: &Tensor) -> Result<Tensor> {
        let (flat, b) = self.batch_of(ids)?;
        let ops = &mut cpu::Train { kernels: self.kernels };
        let x = forward::hidden(ops, &self.weights, &self.wiring, &flat, b, None)?;
        forward::head(ops, &self.weights, &self.wiring, &x)
    }

    /// Training's cross-entropy `[rows]` of the rows `rows` (u32) of the batch `ids` `[batch,
    /// seq]` (flattened to `[batch × seq]` rows) against `targets`, with gradients; the decoder
    /// and the loss are one op, so the `[rows × vocab]` logits never become tensors. Layers
    /// below `from` are frozen: they run as inference does, without recording a graph.
    pub fn train_loss(&self, ids: &Tensor, rows: &[u32], targets: &[u32], from: usize) -> Result<Tensor> {
        let (flat, b) = self.batch_of(ids)?;
        let ops = &mut cpu::Train { kernels: self.kernels };
        // The last layer runs for the scored rows alone (exact: `forward::hidden`), which must
        // then be a trained one.
        let from = from.min(self.weights.layers.len() - 1);
        let x = match from {
            0 => forward::hidden(ops, &self.weights, &self.wiring, &flat, b, Some(rows))?,
            _ => forward::hidden_from(&mut cpu::Infer { kernels: self.kernels }, ops, &self.weights, &self.wiring, &flat, b, from, Some(rows))?,
        };
        let y = forward::head_transform(ops, &self.weights, &self.wiring, &x)?;
        let d = &self.weights.decoder;
        let bias = d.bias.as_ref().expect("the decoder has its output bias (checked at load)");
        let view = if d.is_frozen() { Some(d.frozen(self.kernels)?) } else { None };
        Ok(crate::backend::train_gemm::linear_cross_entropy(&y, d.weight()?, view, bias, targets)?)
    }

    /// Logits `[positions.len(), vocab]` for selected positions of one sequence.
    pub fn logits_at(&self, ids: &[u32], positions: &[usize]) -> Result<Tensor> {
        check_sequence(&self.config, ids, positions)?;
        let rows: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        par::run(|| {
            let ops = &mut cpu::Infer { kernels: self.kernels };
            let x = forward::hidden(ops, &self.weights, &self.wiring, ids, 1, Some(&rows))?;
            forward::head(ops, &self.weights, &self.wiring, &x)
        })
    }
}
