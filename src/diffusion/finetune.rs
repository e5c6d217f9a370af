//! Fine-tuning part of a loaded model: low-rank adapters (LoRA) on the top layers' linears, or
//! the top layers whole. Everything else stays frozen in its stored (often quantized) form:
//! no gradients and no Adam moments for it, and the layers below the lowest trained one run as
//! inference does, without recording a graph for the backward.

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{DType, Device, Tensor, Var};

use super::trainer::TrainOptions;
use crate::backend::cpu::Adapter;
use crate::choice_enum;
use crate::error::{Error, Result};
use crate::model::encoder::Names;
use crate::model::adapters::{self, Adapters, Pair};
use crate::model::forward::LAYER_LINEARS;
use crate::model::weights::Stored;
use crate::model::{Encoder, Model, ModelConfig, WeightStore};
use crate::rng::Rng;

choice_enum! {
    /// What a fine-tune trains.
    pub enum Method {
        /// Low-rank adapters on the linears of the top `layers` layers; the base stays frozen.
        Lora = "lora",
        /// The top `layers` layers and the MLM head (its dense, norm and output bias) whole.
        Top = "top",
        /// Every weight (a model from scratch, always).
        Full = "full",
    }
}

/// LoRA's α: the update is scaled by α / rank. α = 2 · rank's usual default, fixed here so
/// that the learning rate carries over between ranks.
const LORA_ALPHA_PER_RANK: f64 = 2.0;

/// What a partial fine-tune keeps beside its trained variables.
pub struct Frozen {
    /// The loaded model's weights as stored.
    base: WeightStore,
    /// The lowest trained layer; the ones below run without a graph.
    pub from: usize,
    /// `(weight name, layer, slot in Layer::linears_mut)` of every linear with an adapter.
    adapted: Vec<(String, usize, usize)>,
    /// The base's checksum, recorded in saved adapters (made on first use).
    checksum: OnceLock<String>,
}

/// Layers a `lora` or `top` fine-tune trains when `layers` is not given: the top two. Measured
/// on the default model (`bench/RESULTS.md`): LoRA on every layer learns more per step but
/// takes twice as long a step and 1.8× the memory, so at equal time the two are about even,
/// and only the top two fit a tab's memory budget.
pub const DEFAULT_LAYERS: usize = 2;

/// How many of a model's `total` layers a `lora` or `top` fine-tune trains.
pub fn trained_layers(o: &TrainOptions, total: usize) -> usize {
    o.layers.unwrap_or(DEFAULT_LAYERS).min(total)
}

/// Checks `rank` and `layers` against the model a fine-tune would train.
pub fn check(config: &ModelConfig, o: &TrainOptions) -> Result<()> {
    let method = o.method;
    if method == Method::Full && o.layers.is_some() {
        return Err(Error::options("layers applies to method lora or top, not full: leave it out or choose lora or top"));
    }
    let total = config.num_hidden_layers;
    if let Some(n) = o.layers.filter(|&n| n > total) {
        return Err(Error::options(format!("layers must be in [1, {total}] for this model (its layer count), got {n}")));
    }
    let h = config.hidden_size;
    if method == Method::Lora && o.rank > h {
        return Err(Error::options(format!("rank must be in [1, {h}] for this model (its hidden width), got {}", o.rank)));
    }
    Ok(())
}

/// The trainer's encoder and variables for a `lora` or `top` fine-tune of `model`.
pub fn prepare(model: &Model, o: &TrainOptions) -> Result<(Encoder, Vec<(String, Var)>, Frozen)> {
    let config = model.config();
    let total = config.num_hidden_layers;
    let from = total - trained_layers(o, total);
    let names = Names::new(config.family()?);
    let mut store = model.store.clone();
    let mut vars = Vec::new();
    if o.method == Method::Top {
        let layers: Vec<String> = (from..total).map(|i| names.layer(i, "")).collect();
        let head = [names.head_dense(), names.head_norm()];
        let mut trained: Vec<String> = store
            .names()
            .filter(|n| {
                layers.iter().any(|p| n.starts_with(p.as_str()))
                    || head.iter().any(|p| n.starts_with(&format!("{p}.")))
                    || names.head_bias_candidates().contains(n)
                    || names.final_norm().is_some_and(|f| n.starts_with(&format!("{f}.")))
            })
            .cloned()
            .collect();
        trained.sort();
        for n in trained {
            let v = Var::from_tensor(&store.f32_of(&n)?)?;
            store.insert(n.clone(), Stored::Dense(v.as_tensor().clone()));
            vars.push((n, v));
        }
    }
    let mut encoder = Encoder::load(config, &store)?;
    encoder.kernels = model.encoder.kernels;
    let mut adapted = Vec::new();
    if o.method == Method::Lora {
        let r = o.rank;
        let mut rng = Rng::new(o.seed ^ 0x10aa);
        for i in from..total {
            for (slot, lin) in encoder.weights.layers[i].linears_mut().into_iter().enumerate() {
                let (out, inp) = lin.dims;
                // A as a linear layer is usually drawn (uniform, ±1/√in); B = 0, so training
                // starts exactly at the loaded model.
                let bound = 1.0 / (inp as f32).sqrt();
                let a: Vec<f32> = (0..r * inp).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect();
                let a = Var::from_tensor(&Tensor::from_vec(a, (r, inp), &Device::Cpu)?)?;
                let b = Var::zeros((out, r), DType::F32, &Device::Cpu)?;
                lin.adapter = Some(Adapter { a: a.as_tensor().clone(), b: b.as_tensor().clone(), scale: LORA_ALPHA_PER_RANK });
                let name = names.layer(i, LAYER_LINEARS[slot]);
                vars.push((format!("{name}.lora_a"), a));
                vars.push((format!("{name}.lora_b"), b));
                adapted.push((format!("{name}.weight"), i, slot));
            }
        }
    }
    Ok((encoder, vars, Frozen { base: model.store.clone(), from, adapted, checksum: OnceLock::new() }))
}

impl Frozen {
    /// The tensors training changed, in checkpoint names and f32: trained weights as they are
    /// now, and the weights of adapted linears with their adapters merged in.
    fn updated(&self, encoder: &Encoder, vars: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::new();
        for (n, v) in vars.iter().filter(|(n, _)| self.base.contains(n)) {
            out.push((n.clone(), v.as_detached_tensor().copy()?));
        }
        for (name, i, slot) in &self.adapted {
            let lin = encoder.weights.layers[*i].linears()[*slot];
            let adapter = lin.adapter.as_ref().expect("adapted linears carry an adapter");
            out.push((name.clone(), (lin.weight()? + adapter.delta()?)?));
        }
        Ok(out)
    }

    /// Every weight as f32 in checkpoint names, with training's changes.
    pub fn tensors(&self, encoder: &Encoder, vars: &[(String, Var)]) -> Result<Vec<(String, Tensor)>> {
        let mut all: HashMap<String, Tensor> = self.base.to_dense()?;
        all.extend(self.updated(encoder, vars)?);
        let mut v: Vec<_> = all.into_iter().collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// The base model's weights with training's changes, each stored as the base stored it
    /// (a merged q8_0 weight is quantized to q8_0 again), so the result runs as fast and as
    /// small as the model that was loaded.
    pub fn store(&self, encoder: &Encoder, vars: &[(String, Var)]) -> Result<WeightStore> {
        let mut store = self.base.clone();
        for (n, t) in self.updated(encoder, vars)? {
            store.insert_like(&n, t)?;
        }
        Ok(store)
    }

    /// The adapters as they are now, to save apart from the base model; `None` unless the
    /// method is LoRA.
    pub fn adapters(&self, encoder: &Encoder, base_name: &str) -> Result<Option<Adapters>> {
        if self.adapted.is_empty() {
            return Ok(None);
        }
        let mut pairs = Vec::with_capacity(self.adapted.len());
        let mut scale = LORA_ALPHA_PER_RANK;
        for (name, i, slot) in &self.adapted {
            let a = encoder.weights.layers[*i].linears()[*slot].adapter.as_ref().expect("adapted linears carry an adapter");
            scale = a.scale;
            pairs.push(Pair { weight: name.clone(), a: a.a.copy()?, b: a.b.copy()? });
        }
        let base = match self.checksum.get() {
            Some(c) => c.clone(),
            None => {
                let c = adapters::checksum(&self.base)?;
                self.checksum.get_or_init(|| c).clone()
            }
        };
        Ok(Some(Adapters { base, base_name: base_name.to_string(), scale, pairs }))
    }
}
