//! The model: configuration, weights, the encoder + MLM head, and the tokenizer, loaded from
//! a Hugging Face folder or from our single-file GGUF.

pub mod adapters;
pub mod bpe;
pub mod config;
pub mod encoder;
pub mod forward;
#[cfg(feature = "webgpu")]
pub mod gpu;
pub mod init;
pub mod gguf;
pub mod text;
pub mod weights;

use candle_core::Tensor;
use serde::Serialize;

pub use config::{Family, ModelConfig};
pub use encoder::Encoder;
#[cfg(feature = "webgpu")]
pub use gpu::GpuEncoder;
pub use text::TextCodec;
pub use weights::WeightStore;

use crate::error::{Error, Result};

pub struct Model {
    pub encoder: Encoder,
    pub codec: TextCodec,
    pub store: WeightStore,
    pub name: String,
}

/// What a UI shows on a model card.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub name: String,
    pub model_type: String,
    pub parameters: usize,
    pub dtype: String,
    pub weight_bytes: usize,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub max_sequence_len: usize,
}

/// Bytes of f32 weights a wasm instance may hold: the CPU path computes in f32 unless the
/// integer kernel takes a quantized linear (then no f32 form is made: this bound is the
/// conservative one), and wasm32 addresses 4 GiB in all, with the file and the activations to
/// fit next to the weights.
const WASM_WEIGHT_BUDGET: u64 = 5 << 29; // 2.5 GiB

/// Refuses, before allocating, a model whose f32 weights cannot fit a wasm instance.
fn check_compute_memory(config: &ModelConfig) -> Result<()> {
    let bytes = (config.parameter_count() as u64).saturating_mul(4);
    if cfg!(target_arch = "wasm32") && bytes > WASM_WEIGHT_BUDGET {
        return Err(Error::model(format!(
            "this model needs {} MiB of f32 weights to run, more than the {} MiB a wasm instance can give it",
            bytes >> 20,
            WASM_WEIGHT_BUDGET >> 20
        )));
    }
    Ok(())
}

impl Model {
    /// Builds a model from its three parts, checking that they fit together.
    pub fn from_parts(name: &str, config: ModelConfig, store: WeightStore, tokenizer_json: &str) -> Result<Self> {
        config.validate()?;
        let codec = TextCodec::from_json(tokenizer_json)?;
        if codec.vocab_size > config.vocab_size {
            return Err(Error::Tokenizer(format!(
                "the tokenizer has {} tokens but the model's vocabulary has {}: wrong tokenizer for this model?",
                codec.vocab_size, config.vocab_size
            )));
        }
        // A tokenizer of the right size can still be another model's (BERT's `[PAD]` = 0 on a
        // RoBERTa whose padding is 1): the padding id both files declare must agree.
        if let (Some(cfg_pad), Some(tok_pad)) = (config.pad_token_id, codec.pad_id) {
            if cfg_pad != tok_pad {
                return Err(Error::Tokenizer(format!(
                    "the tokenizer pads with id {tok_pad} but config.json says {cfg_pad}: wrong tokenizer for this model?"
                )));
            }
        }
        check_compute_memory(&config)?;
        let encoder = Encoder::load(&config, &store)?;
        Ok(Self { encoder, codec, store, name: name.to_string() })
    }

    /// A Hugging Face checkpoint given as bytes: `config.json`, `model.safetensors`,
    /// `tokenizer.json`.
    pub fn from_hf_bytes(name: &str, config_json: &[u8], safetensors: &[u8], tokenizer_json: &[u8]) -> Result<Self> {
        Self::from_hf_parts(name, config_json, WeightStore::from_safetensors(safetensors)?, tokenizer_json)
    }

    /// A Hugging Face checkpoint whose weights are already read (one file or shards).
    fn from_hf_parts(name: &str, config_json: &[u8], store: WeightStore, tokenizer_json: &[u8]) -> Result<Self> {
        let config = ModelConfig::from_json(config_json)?;
        let tok = std::str::from_utf8(tokenizer_json)
            .map_err(|_| Error::Tokenizer("tokenizer.json is not UTF-8".into()))?;
        Self::from_parts(name, config, store, tok)
    }

    /// A GGUF file written by `unmask convert`.
    pub fn from_gguf_bytes(bytes: &[u8]) -> Result<Self> {
        let g = gguf::read(bytes)?;
        Self::from_parts(&g.name, g.config, g.store, &g.tokenizer_json)
    }

    /// A folder holding a Hugging Face checkpoint, or a `.gguf` file.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let read = |p: std::path::PathBuf, what: &str| {
            std::fs::read(&p).map_err(|e| Error::model(format!("cannot read {what} at {}: {e}", p.display())))
        };
        if path.is_dir() {
            let name = path.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            let tok_path = path.join("tokenizer.json");
            if !tok_path.exists() {
                return Err(Error::Tokenizer(format!("{} has no tokenizer.json", path.display())));
            }
            let config = read(path.join("config.json"), "config.json")?;
            let tok = read(tok_path, "tokenizer")?;
            Self::from_hf_parts(&name, &config, read_safetensors_dir(path)?, &tok)
        } else {
            Self::from_gguf_bytes(&read(path.to_path_buf(), "model file")?)
        }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.encoder.config
    }

    pub fn info(&self) -> ModelInfo {
        let c = self.config();
        ModelInfo {
            name: self.name.clone(),
            model_type: c.model_type.clone(),
            parameters: c.parameter_count(),
            dtype: gguf::dtype_summary(&self.store),
            weight_bytes: self.store.stored_bytes(),
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            max_sequence_len: c.max_sequence_len(),
        }
    }

    /// Writes this model as a GGUF file with the given weight type.
    pub fn write_gguf<W: std::io::Write + std::io::Seek>(
        &self,
        w: &mut W,
        dtype: gguf::WeightDtype,
    ) -> Result<gguf::ConvertReport> {
        let tensors = gguf::sorted_dense(&self.store)?;
        gguf::write(w, &self.name, self.config(), self.codec.json(), &tensors, dtype)
    }

    /// Logits `[positions.len(), vocab]` as a flat row-major vector.
    pub fn logits_at(&self, ids: &[u32], positions: &[usize]) -> Result<Vec<f32>> {
        self.logits_with(ids, positions, <[f32]>::to_vec)
    }

    /// [`Self::logits_at`] handed to `f` where the forward left them, for a caller that copies
    /// them elsewhere anyway (into JS memory: a Vec in between was one more serial pass over
    /// 16 MB for 256 positions).
    pub fn logits_with<R>(&self, ids: &[u32], positions: &[usize], f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        let t: Tensor = self.encoder.logits_at(ids, positions)?;
        crate::backend::cpu::with_f32(&t, f)
    }
}

/// The weights of a Hugging Face folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json` (as `save_pretrained` writes large or `max_shard_size` models).
#[cfg(not(target_arch = "wasm32"))]
pub fn read_safetensors_dir(path: &std::path::Path) -> Result<WeightStore> {
    let read = |p: std::path::PathBuf| std::fs::read(&p).map_err(|e| Error::model(format!("cannot read {}: {e}", p.display())));
    let single = path.join("model.safetensors");
    if single.exists() {
        return WeightStore::from_safetensors(&read(single)?);
    }
    let index = path.join("model.safetensors.index.json");
    if !index.exists() {
        return Err(Error::model(format!(
            "{} has no model.safetensors (PyTorch .bin checkpoints are not supported; re-save with safe_serialization=True)",
            path.display()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&read(index)?)
        .map_err(|e| Error::model(format!("model.safetensors.index.json is not valid JSON: {e}")))?;
    let map = v.get("weight_map").and_then(|m| m.as_object())
        .ok_or_else(|| Error::model("model.safetensors.index.json has no weight_map"))?;
    let mut shards: Vec<&str> = map.values().filter_map(|f| f.as_str()).collect();
    shards.sort_unstable();
    shards.dedup();
    let mut store = WeightStore::default();
    for shard in shards {
        // Shard names come from the file: keep them inside the folder.
        if shard.contains('/') || shard.contains('\\') || shard.starts_with('.') {
            return Err(Error::model(format!("shard name `{shard}` leaves the model folder")));
        }
        store.merge(WeightStore::from_safetensors(&read(path.join(shard))?)?);
    }
    Ok(store)
}
