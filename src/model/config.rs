//! Model configuration, read from (and written as) a Hugging Face `config.json`.
//!
//! We keep the field names of `transformers` so that a checkpoint we export loads there too.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The encoder layouts we implement. They differ in tensor names, position offsets and where
/// layer norm sits (after each sub-layer, or before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `bert-base-cased` layout: `bert.` prefix, positions from 0, token-type embeddings,
    /// `cls.predictions` head.
    Bert,
    /// RoBERTa / DistilRoBERTa / XLM-R: `roberta.` prefix, positions offset by `padding_idx + 1`,
    /// `lm_head` with its own bias.
    Roberta,
    /// `roberta-prelayernorm`: RoBERTa with layer norm before each sub-layer and one at the end.
    RobertaPreLayerNorm,
}

impl Family {
    pub fn from_model_type(t: &str) -> Result<Family> {
        match t {
            "bert" => Ok(Family::Bert),
            "roberta" | "xlm-roberta" | "camembert" => Ok(Family::Roberta),
            "roberta-prelayernorm" => Ok(Family::RobertaPreLayerNorm),
            other => Err(Error::model(format!(
                "unsupported model_type `{other}` (supported: bert, roberta, xlm-roberta, roberta-prelayernorm)"
            ))),
        }
    }

    /// Prefix of the encoder's tensors in `*ForMaskedLM` checkpoints.
    pub fn prefix(self) -> &'static str {
        match self {
            Family::Bert => "bert",
            Family::Roberta => "roberta",
            Family::RobertaPreLayerNorm => "roberta_prelayernorm",
        }
    }

    pub fn pre_layer_norm(self) -> bool {
        matches!(self, Family::RobertaPreLayerNorm)
    }

    /// The `architectures` entry `transformers` uses for the masked-LM class.
    pub fn mlm_architecture(self) -> &'static str {
        match self {
            Family::Bert => "BertForMaskedLM",
            Family::Roberta => "RobertaForMaskedLM",
            Family::RobertaPreLayerNorm => "RobertaPreLayerNormForMaskedLM",
        }
    }
}

fn default_act() -> String {
    "gelu".into()
}
fn default_max_pos() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_pos_type() -> String {
    "absolute".into()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelConfig {
    pub model_type: String,
    #[serde(default)]
    pub architectures: Vec<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub bos_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<u32>,
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
}

pub use crate::backend::Activation;

/// Upper bounds that keep a hostile config from asking for absurd allocations before any
/// tensor is read (a model this size would not run in a browser anyway).
const MAX_PARAMS: usize = 1 << 30;

impl ModelConfig {
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let cfg: ModelConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::model(format!("config.json is not a valid model config: {e}")))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    pub fn family(&self) -> Result<Family> {
        Family::from_model_type(&self.model_type)
    }

    pub fn activation(&self) -> Result<Activation> {
        match self.hidden_act.as_str() {
            "gelu" => Ok(Activation::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
            "relu" => Ok(Activation::Relu),
            other => Err(Error::model(format!("unsupported hidden_act `{other}`"))),
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// RoBERTa counts positions from `padding_idx + 1`; BERT from 0.
    pub fn position_offset(&self) -> usize {
        match self.family() {
            Ok(Family::Bert) | Err(_) => 0,
            Ok(_) => self.pad_token_id.unwrap_or(1) as usize + 1,
        }
    }

    /// The longest sequence (special tokens included) the position table allows.
    pub fn max_sequence_len(&self) -> usize {
        self.max_position_embeddings.saturating_sub(self.position_offset())
    }

    /// Parameters of encoder + head (tied decoder counted once).
    pub fn parameter_count(&self) -> usize {
        // Saturating u64 arithmetic: this runs on hostile configs before they are refused, and
        // usize is 32 bits in wasm.
        let [h, i, l, v, p, t] = [
            self.hidden_size,
            self.intermediate_size,
            self.num_hidden_layers,
            self.vocab_size,
            self.max_position_embeddings,
            self.type_vocab_size,
        ]
        .map(|x| x as u64);
        let m = |a: u64, b: u64| a.saturating_mul(b);
        let sum = |xs: &[u64]| xs.iter().fold(0u64, |acc, &x| acc.saturating_add(x));
        let emb = sum(&[m(v, h), m(p, h), m(t, h), m(2, h)]);
        let layer = sum(&[m(4, m(h, h).saturating_add(h)), m(2, m(h, i)), i, h, m(4, h)]);
        let head = sum(&[m(h, h), h, m(2, h), v]);
        let final_ln = if self.family().map(|f| f.pre_layer_norm()).unwrap_or(false) { m(2, h) } else { 0 };
        usize::try_from(sum(&[emb, m(l, layer), head, final_ln])).unwrap_or(usize::MAX)
    }

    pub fn validate(&self) -> Result<()> {
        self.family()?;
        self.activation()?;
        let nonzero = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ];
        for (name, v) in nonzero {
            if v == 0 {
                return Err(Error::model(format!("config `{name}` must be positive")));
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            return Err(Error::model(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            )));
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::model(format!(
                "position_embedding_type `{}` is not supported (only `absolute`)",
                self.position_embedding_type
            )));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return Err(Error::model("layer_norm_eps must be in (0, 1)"));
        }
        // Checked arithmetic: a config claiming huge sizes is refused before any allocation.
        let h = self.hidden_size;
        let big = [
            self.vocab_size,
            self.intermediate_size,
            self.max_position_embeddings,
            self.num_hidden_layers,
            self.type_vocab_size,
        ];
        let overflow = big.iter().any(|&x| x.checked_mul(h).map_or(true, |p| p > MAX_PARAMS));
        if overflow || self.parameter_count() > MAX_PARAMS {
            return Err(Error::model(format!(
                "config declares more than {MAX_PARAMS} parameters; refusing to allocate"
            )));
        }
        if self.max_sequence_len() < 3 {
            return Err(Error::model("max_position_embeddings leaves no room for a sequence"));
        }
        Ok(())
    }

    /// Small named configurations for training from scratch (pre-LN: it trains more easily).
    pub fn named(name: &str, vocab_size: usize) -> Result<Self> {
        let (h, l, heads, i, pos) = match name {
            "tiny" => (128, 2, 4, 512, 130),
            "small" => (256, 4, 4, 1024, 258),
            other => return Err(Error::options(format!("unknown model size `{other}` (use tiny or small)"))),
        };
        let cfg = ModelConfig {
            model_type: "roberta-prelayernorm".into(),
            architectures: vec![Family::RobertaPreLayerNorm.mlm_architecture().into()],
            vocab_size,
            hidden_size: h,
            num_hidden_layers: l,
            num_attention_heads: heads,
            intermediate_size: i,
            hidden_act: "gelu".into(),
            max_position_embeddings: pos,
            type_vocab_size: 1,
            layer_norm_eps: 1e-5,
            pad_token_id: Some(1),
            bos_token_id: Some(0),
            eos_token_id: Some(2),
            position_embedding_type: "absolute".into(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
