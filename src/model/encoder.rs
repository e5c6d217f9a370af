//! The one encoder + MLM head definition shared by BERT, RoBERTa and roberta-prelayernorm.
//!
//! Layouts differ only in tensor names, the position offset, and where layer norm sits;
//! those differences are resolved once at load time so the forward pass is one code path.

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};

use super::config::{Activation, Family, ModelConfig};
use super::weights::{Stored, WeightStore};
use crate::backend::int8::{self, QWeights};
use crate::backend::{cpu, Mode};
use crate::error::{Error, Result};

/// A linear layer, `[out, in]` weights. Computation is in f32 or, for weights stored
/// quantized, through the integer kernel ([`int8`]) where it is on. The f32 form of a
/// quantized weight is made on first use only: with the integer kernel (the wasm default) it
/// is never needed, and a quantized model's linears stay at 1–2 bytes per weight in wasm
/// memory instead of 4 more (f32 is what computes fastest on the CPU otherwise: candle's
/// quantized matmul is 2.3× slower than its f32 one).
pub struct Linear {
    weight: std::sync::OnceLock<Tensor>,
    /// The stored blocks of a weight kept quantized until its f32 form is asked for.
    blocks: Option<std::sync::Arc<candle_core::quantized::QTensor>>,
    /// `(out, in)`.
    pub dims: (usize, usize),
    pub bias: Option<Tensor>,
    /// The weight's tensor name (a GPU backend uploads its quantized blocks from the store).
    pub name: String,
    /// Stored quantized in the file: inference may use the integer kernel.
    pub quantized: bool,
    /// The integer kernel's copy of the weight, made on first use.
    int8: std::sync::OnceLock<QWeights>,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>, name: String, store: &WeightStore) -> Result<Self> {
        let dims = weight.dims2()?;
        Ok(Self { weight: weight.into(), blocks: None, dims, bias, quantized: Self::stored_quantized(store, &name), name, int8: Default::default() })
    }

    fn stored_quantized(store: &WeightStore, name: &str) -> bool {
        store.dtype_of(name).is_some_and(|d| !matches!(d, GgmlDType::F32 | GgmlDType::F16 | GgmlDType::BF16))
    }

    fn load(store: &WeightStore, name: &str, out: usize, inp: usize) -> Result<Self> {
        let wname = format!("{name}.weight");
        let bias = Some(store.dense(&format!("{name}.bias"), &[out])?);
        match store.lookup(&wname, &[out, inp])? {
            Stored::Dense(t) => Self::new(t.clone(), bias, wname, store),
            Stored::Quant(q) => Ok(Self {
                weight: Default::default(),
                blocks: Some(q.clone()),
                dims: (out, inp),
                bias,
                quantized: Self::stored_quantized(store, &wname),
                name: wname,
                int8: Default::default(),
            }),
        }
    }

    /// The f32 weight `[out, in]` (dequantized on first use when the file stores it quantized).
    pub fn weight(&self) -> Result<&Tensor> {
        if let Some(w) = self.weight.get() {
            return Ok(w);
        }
        let q = self.blocks.as_ref().expect("a linear holds f32 weights or stored blocks");
        let w = q.dequantize(&Device::Cpu)?;
        Ok(self.weight.get_or_init(|| w))
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Inference && self.quantized && int8::int8_enabled() {
            let q = match self.int8.get() {
                Some(q) => q,
                None => {
                    let (n, k) = self.dims;
                    let make = |w: &Tensor| cpu::with_f32(w, |w| QWeights::from_f32(w, n, k));
                    // From a temporary f32 copy when no f32 form is kept.
                    let q = match (self.weight.get(), &self.blocks) {
                        (None, Some(b)) => make(&b.dequantize(&Device::Cpu)?)?,
                        _ => make(self.weight()?)?,
                    };
                    self.int8.get_or_init(|| q)
                }
            };
            return cpu::linear_int8(x, q, self.bias.as_ref());
        }
        cpu::linear(x, self.weight()?, self.bias.as_ref(), mode)
    }
}

pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    fn load(store: &WeightStore, name: &str, h: usize, eps: f64) -> Result<Self> {
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
        Ok(Self {
            weight: store.dense(&pick("weight", "gamma"), &[h])?,
            bias: store.dense(&pick("bias", "beta"), &[h])?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        cpu::layer_norm(x, &self.weight, &self.bias, self.eps, mode)
    }
}

pub struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attn_out: Linear,
    /// Post-LN: `attention.output.LayerNorm` (after the residual). Pre-LN: `attention.LayerNorm`.
    pub attn_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    /// Post-LN: `output.LayerNorm`. Pre-LN: `intermediate.LayerNorm`.
    pub ffn_norm: LayerNorm,
}

pub struct Encoder {
    pub config: ModelConfig,
    pub family: Family,
    act: Activation,
    /// `transformers`' RoBERTa heads hard-code exact GELU; BERT's follow `hidden_act`.
    head_act: Activation,
    pub word_embeddings: Tensor,
    pub position_embeddings: Tensor,
    pub token_type_embeddings: Option<Tensor>,
    pub embed_norm: LayerNorm,
    pub layers: Vec<Layer>,
    /// Pre-LN models normalise the encoder's output once more.
    pub final_norm: Option<LayerNorm>,
    pub head_dense: Linear,
    pub head_norm: LayerNorm,
    /// `[vocab, hidden]`: tied to the word embeddings unless the checkpoint stores its own.
    pub decoder: Linear,
    pub mode: Mode,
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
        let word_embeddings = store.dense(&word_name, &[v, h])?;
        let position_embeddings =
            store.dense(&n.emb("position_embeddings.weight"), &[config.max_position_embeddings, h])?;
        let tt_name = n.emb("token_type_embeddings.weight");
        let token_type_embeddings = if config.type_vocab_size > 0 && store.contains(&tt_name) {
            Some(store.dense(&tt_name, &[config.type_vocab_size, h])?.narrow(0, 0, 1)?)
        } else {
            None
        };
        let embed_norm = LayerNorm::load(store, &n.emb("LayerNorm"), h, eps)?;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for l in 0..config.num_hidden_layers {
            layers.push(Layer {
                query: Linear::load(store, &n.layer(l, "attention.self.query"), h, h)?,
                key: Linear::load(store, &n.layer(l, "attention.self.key"), h, h)?,
                value: Linear::load(store, &n.layer(l, "attention.self.value"), h, h)?,
                attn_out: Linear::load(store, &n.layer(l, "attention.output.dense"), h, h)?,
                attn_norm: LayerNorm::load(store, &n.attn_norm(l), h, eps)?,
                intermediate: Linear::load(store, &n.layer(l, "intermediate.dense"), i, h)?,
                output: Linear::load(store, &n.layer(l, "output.dense"), h, i)?,
                ffn_norm: LayerNorm::load(store, &n.ffn_norm(l), h, eps)?,
            });
        }
        let final_norm = match n.final_norm() {
            Some(name) => Some(LayerNorm::load(store, &name, h, eps)?),
            None => None,
        };
        let head_dense = Linear::load(store, n.head_dense(), h, h)?;
        let head_norm = LayerNorm::load(store, n.head_norm(), h, eps)?;
        let dec_w = format!("{}.weight", n.decoder());
        // Tied decoders share the embedding table's f32 storage (no second copy).
        let (weight, decoder_name) = if store.contains(&dec_w) {
            (store.dense(&dec_w, &[v, h])?, dec_w)
        } else {
            (word_embeddings.clone(), word_name.clone())
        };
        let [b1, b2] = n.head_bias_candidates();
        let bias_name = if store.contains(&b1) { b1 } else { b2 };
        let bias = store.dense(&bias_name, &[v]).map_err(|_| {
            Error::tensor(n.head_bias_candidates()[0].clone(), "missing from the checkpoint (no MLM head?)")
        })?;
        Ok(Self {
            config: config.clone(),
            family,
            act: config.activation()?,
            head_act: match family {
                Family::Bert => config.activation()?,
                _ => Activation::Gelu,
            },
            word_embeddings,
            position_embeddings,
            token_type_embeddings,
            embed_norm,
            layers,
            final_norm,
            head_dense,
            head_norm,
            decoder: Linear::new(weight, Some(bias), decoder_name, store)?,
            mode: Mode::Inference,
        })
    }

    /// The activation of the feed-forward layers and of the MLM head's transform.
    pub fn activations(&self) -> (Activation, Activation) {
        (self.act, self.head_act)
    }

    pub fn device(&self) -> &Device {
        self.word_embeddings.device()
    }

    /// Hidden states `[batch, seq, hidden]` for token ids `[batch, seq]` (u32). No padding:
    /// every sequence in a batch has the same length, as both generation and packed training
    /// produce.
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        self.hidden_rows(ids, None)
    }

    /// [`Self::hidden`], or with `rows` (u32 positions, the same for every sequence of the
    /// batch) only those rows of the output: the last layer then computes its query, feed-forward and norms for those rows
    /// alone (every row still serves as a key and value). Exact, since each row of a layer's
    /// output depends on the other rows only through the keys and values.
    fn hidden_rows(&self, ids: &Tensor, rows: Option<&Tensor>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let offset = self.config.position_offset();
        if t + offset > self.config.max_position_embeddings {
            return Err(Error::input(format!(
                "sequence of {t} tokens exceeds the model's context of {}",
                self.config.max_sequence_len()
            )));
        }
        let h = self.config.hidden_size;
        let flat = ids.flatten_all()?;
        let words = self.word_embeddings.index_select(&flat, 0)?.reshape((b, t, h))?;
        let pos = self.position_embeddings.narrow(0, offset, t)?;
        let mut x = words.broadcast_add(&pos)?;
        if let Some(tt) = &self.token_type_embeddings {
            x = x.broadcast_add(tt)?;
        }
        let mut x = self.embed_norm.forward(&x, self.mode)?;
        let last = self.layers.len().saturating_sub(1);
        // At least one layer: the config is validated at load.
        for (l, layer) in self.layers.iter().enumerate() {
            x = self.layer_forward(layer, &x, rows.filter(|_| l == last))?;
        }
        if let Some(norm) = &self.final_norm {
            x = norm.forward(&x, self.mode)?;
        }
        Ok(x)
    }

    /// Attention of the rows `q_in` over the keys and values of all rows `kv_in`.
    fn attention(&self, layer: &Layer, q_in: &Tensor, kv_in: &Tensor) -> Result<Tensor> {
        let q = layer.query.forward(q_in, self.mode)?;
        let k = layer.key.forward(kv_in, self.mode)?;
        let v = layer.value.forward(kv_in, self.mode)?;
        let ctx = cpu::attention(&q, &k, &v, self.config.num_attention_heads, self.mode)?;
        layer.attn_out.forward(&ctx, self.mode)
    }

    fn ffn(&self, layer: &Layer, x: &Tensor) -> Result<Tensor> {
        let y = cpu::activation(&layer.intermediate.forward(x, self.mode)?, self.act, self.mode)?;
        layer.output.forward(&y, self.mode)
    }

    /// One layer; with `rows`, only those rows of its output.
    fn layer_forward(&self, layer: &Layer, x: &Tensor, rows: Option<&Tensor>) -> Result<Tensor> {
        let pick = |t: &Tensor| -> Result<Tensor> {
            match rows {
                Some(r) => Ok(t.index_select(r, 1)?),
                None => Ok(t.clone()),
            }
        };
        if self.family.pre_layer_norm() {
            let n = layer.attn_norm.forward(x, self.mode)?;
            let a = (pick(x)? + self.attention(layer, &pick(&n)?, &n)?)?;
            Ok((&a + self.ffn(layer, &layer.ffn_norm.forward(&a, self.mode)?)?)?)
        } else {
            let xs = pick(x)?;
            let a = layer.attn_norm.forward(&(&xs + self.attention(layer, &xs, x)?)?, self.mode)?;
            layer.ffn_norm.forward(&(&a + self.ffn(layer, &a)?)?, self.mode)
        }
    }

    /// MLM logits `[..., vocab]` for hidden states `[..., hidden]`. Generation calls this
    /// only on the masked positions: the head is the model's largest matmul.
    pub fn head(&self, hidden: &Tensor) -> Result<Tensor> {
        let y = cpu::activation(&self.head_dense.forward(hidden, self.mode)?, self.head_act, self.mode)?;
        let y = self.head_norm.forward(&y, self.mode)?;
        self.decoder.forward(&y, self.mode)
    }

    /// Logits for every position: `[batch, seq, vocab]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.head(&self.hidden(ids)?)
    }

    /// Logits `[positions.len(), vocab]` for selected positions of one sequence.
    pub fn logits_at(&self, ids: &[u32], positions: &[usize]) -> Result<Tensor> {
        check_sequence(&self.config, ids, positions)?;
        let t = Tensor::new(ids, self.device())?.unsqueeze(0)?;
        let idx: Vec<u32> = positions.iter().map(|&p| p as u32).collect();
        let idx = Tensor::new(idx.as_slice(), self.device())?;
        let rows = self.hidden_rows(&t, Some(&idx))?.squeeze(0)?;
        self.head(&rows)
    }
}
