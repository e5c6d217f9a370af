//! Our single-file model format: GGUF holding the weights (f32, f16, q8_0 or q4_k), the
//! Hugging Face config and the tokenizer JSON, so a browser fetches exactly one file.

use std::io::{Cursor, Seek, Write};
use std::str::FromStr;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Tensor;

use super::config::ModelConfig;
use super::weights::{Stored, WeightStore};
use crate::error::{Error, Result};

pub const ARCH: &str = "unmask-encoder";
pub const KEY_CONFIG: &str = "unmask.config";
pub const KEY_TOKENIZER: &str = "tokenizer.huggingface.json";
pub const KEY_NAME: &str = "general.name";
pub const KEY_VERSION: &str = "unmask.format_version";
pub const FORMAT_VERSION: u32 = 1;

/// Storage type for the weight matrices of a converted model. With `Q4K`, matrices whose
/// rows are not a multiple of 256 use q4_0 (4-bit, 32-wide blocks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    F16,
    Q8_0,
    Q4K,
}

impl FromStr for WeightDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "q8_0" | "q8" => Ok(Self::Q8_0),
            "q4_k" | "q4k" | "q4" => Ok(Self::Q4K),
            other => Err(Error::options(format!("unknown dtype `{other}` (use f32, f16, q8_0 or q4_k)"))),
        }
    }
}

impl WeightDtype {
    fn ggml(self) -> GgmlDType {
        match self {
            Self::F32 => GgmlDType::F32,
            Self::F16 => GgmlDType::F16,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => GgmlDType::Q4K,
        }
    }
}

/// The stored type for one tensor: 1-D tensors (biases, norms) stay f32; matrices whose rows
/// do not split into the format's blocks fall back to the next finer format.
fn choose(name: &str, dims: &[usize], want: WeightDtype) -> GgmlDType {
    if dims.len() < 2 {
        return GgmlDType::F32;
    }
    // Position and token-type tables are added to every input: 16-bit keeps them exact
    // enough at half the size.
    if name.contains("position_embeddings") || name.contains("token_type_embeddings") {
        return if want == WeightDtype::F32 { GgmlDType::F32 } else { GgmlDType::F16 };
    }
    let cols = *dims.last().unwrap_or(&0);
    // The tied embedding is also the output layer, where 4-bit error shows most in the
    // logits; like llama.cpp's q4 mixes, keep it at 8 bits.
    let want = if want == WeightDtype::Q4K && (name.contains("word_embeddings") || name.contains("decoder")) {
        WeightDtype::Q8_0
    } else {
        want
    };
    let mut d = want.ggml();
    loop {
        if cols % d.block_size() == 0 {
            return d;
        }
        d = match d {
            // 4-bit in 32-wide blocks when rows do not split into q4_k's 256.
            GgmlDType::Q4K => GgmlDType::Q4_0,
            GgmlDType::Q4_0 => GgmlDType::Q8_0,
            GgmlDType::Q8_0 => GgmlDType::F16,
            _ => return GgmlDType::F32,
        };
    }
}

/// What a conversion wrote, for the CLI to report.
#[derive(Debug, Default)]
pub struct ConvertReport {
    pub tensors: Vec<(String, Vec<usize>, String)>,
    pub bytes: u64,
}

/// Writes a model as GGUF. `tensors` are f32; each is quantized per [`choose`].
pub fn write<W: Write + Seek>(
    w: &mut W,
    name: &str,
    config: &ModelConfig,
    tokenizer_json: &str,
    tensors: &[(String, Tensor)],
    dtype: WeightDtype,
) -> Result<ConvertReport> {
    let mut report = ConvertReport::default();
    let mut q = Vec::with_capacity(tensors.len());
    for (n, t) in tensors {
        let d = choose(n, t.dims(), dtype);
        report.tensors.push((n.clone(), t.dims().to_vec(), format!("{d:?}")));
        // `QTensor::quantize` reads the tensor's whole backing storage, ignoring views
        // (a `narrow`ed tensor would be quantized with its parent's size): give it a copy.
        let owned = Tensor::from_vec(t.flatten_all()?.to_vec1::<f32>()?, t.shape(), &candle_core::Device::Cpu)?;
        q.push((n.as_str(), QTensor::quantize(&owned, d)?));
    }
    let cfg = gguf_file::Value::String(config.to_json());
    let tok = gguf_file::Value::String(tokenizer_json.to_string());
    let arch = gguf_file::Value::String(ARCH.into());
    let nm = gguf_file::Value::String(name.into());
    let ver = gguf_file::Value::U32(FORMAT_VERSION);
    let meta: Vec<(&str, &gguf_file::Value)> = vec![
        ("general.architecture", &arch),
        (KEY_NAME, &nm),
        (KEY_VERSION, &ver),
        (KEY_CONFIG, &cfg),
        (KEY_TOKENIZER, &tok),
    ];
    let refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (*n, t)).collect();
    let start = w.stream_position()?;
    gguf_file::write(w, &meta, &refs)?;
    report.bytes = w.stream_position()? - start;
    Ok(report)
}

/// A parsed GGUF model file: weights, config, tokenizer JSON, display name.
pub struct GgufModel {
    pub store: WeightStore,
    pub config: ModelConfig,
    pub tokenizer_json: String,
    pub name: String,
}

fn meta_str<'a>(c: &'a gguf_file::Content, key: &str) -> Result<&'a str> {
    match c.metadata.get(key) {
        Some(gguf_file::Value::String(s)) => Ok(s),
        Some(_) => Err(Error::model(format!("GGUF metadata `{key}` is not a string"))),
        None => Err(Error::model(format!(
            "GGUF file has no `{key}`: not a model written by `unmask convert`"
        ))),
    }
}

pub fn read(bytes: &[u8]) -> Result<GgufModel> {
    if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
        return Err(Error::model("not a GGUF file (bad magic bytes)"));
    }
    let content = gguf_file::Content::read(&mut Cursor::new(bytes))
        .map_err(|e| Error::model(format!("corrupted or truncated GGUF header: {e}")))?;
    match content.metadata.get("general.architecture") {
        Some(gguf_file::Value::String(a)) if a == ARCH => {}
        Some(gguf_file::Value::String(a)) => {
            return Err(Error::model(format!("GGUF architecture `{a}` is not an Unmask encoder model")))
        }
        _ => return Err(Error::model("GGUF file has no general.architecture")),
    }
    let config = ModelConfig::from_json(meta_str(&content, KEY_CONFIG)?.as_bytes())?;
    let tokenizer_json = meta_str(&content, KEY_TOKENIZER)?.to_string();
    let name = meta_str(&content, KEY_NAME).unwrap_or("unnamed").to_string();
    // Every tensor must lie inside the file before we allocate for any of them.
    let len = bytes.len() as u64;
    for (n, info) in &content.tensor_infos {
        let elems = info.shape.elem_count() as u64;
        let bs = info.ggml_dtype.block_size() as u64;
        let size = (elems / bs.max(1)).saturating_mul(info.ggml_dtype.type_size() as u64);
        let end = content.tensor_data_offset.saturating_add(info.offset).saturating_add(size);
        if end > len {
            return Err(Error::tensor(
                n,
                format!("extends to byte {end} but the file has {len} bytes: truncated download?"),
            ));
        }
    }
    let store = WeightStore::from_gguf(&content, bytes)?;
    Ok(GgufModel { store, config, tokenizer_json, name })
}

/// The tensors of a store in a stable order (for writing).
pub fn sorted_dense(store: &WeightStore) -> Result<Vec<(String, Tensor)>> {
    let mut v: Vec<(String, Tensor)> = store.to_dense()?.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

/// Human-readable summary of a store's storage types (e.g. `q8_0 (+f32)`).
pub fn dtype_summary(store: &WeightStore) -> String {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    for n in store.names() {
        let (kind, elems) = match store.get(n) {
            Some(Stored::Quant(q)) => (format!("{:?}", q.dtype()).to_lowercase(), q.shape().elem_count()),
            Some(Stored::Dense(t)) => ("f32".to_string(), t.elem_count()),
            None => continue,
        };
        *counts.entry(kind).or_default() += elems;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1));
    v.into_iter().map(|x| x.0).collect::<Vec<_>>().join("+")
}
