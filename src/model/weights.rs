//! Named tensors from a Hugging Face safetensors file, a GGUF file, or a training run's
//! variables, behind one lookup that checks names and shapes and says which tensor is wrong.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Arc;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::error::{Error, Result};

/// One stored tensor: plain f32, or quantized blocks as in the GGUF file.
#[derive(Clone)]
pub enum Stored {
    Dense(Tensor),
    Quant(Arc<QTensor>),
}

impl Stored {
    fn dims(&self) -> &[usize] {
        match self {
            Stored::Dense(t) => t.dims(),
            Stored::Quant(q) => q.shape().dims(),
        }
    }
}

/// A set of named tensors.
#[derive(Clone, Default)]
pub struct WeightStore {
    tensors: HashMap<String, Stored>,
}

impl WeightStore {
    pub fn new(tensors: HashMap<String, Stored>) -> Self {
        Self { tensors }
    }

    /// Parses a safetensors buffer (any float dtype; converted to f32).
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self> {
        let map = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
            .map_err(|e| Error::model(format!("model.safetensors is not a valid safetensors file: {e}")))?;
        let mut tensors = HashMap::with_capacity(map.len());
        for (name, t) in map {
            let t = match t.dtype() {
                DType::F32 => t,
                DType::F16 | DType::BF16 | DType::F64 => t.to_dtype(DType::F32)?,
                // Integer buffers (e.g. `position_ids`) are not weights.
                _ => continue,
            };
            tensors.insert(name, Stored::Dense(t));
        }
        Ok(Self { tensors })
    }

    /// Adds every tensor of another store (a further shard of a sharded checkpoint).
    pub fn merge(&mut self, other: WeightStore) {
        self.tensors.extend(other.tensors);
    }

    /// Reads every tensor of a parsed GGUF file. Tensors stay quantized; `dense` dequantizes
    /// on demand.
    pub fn from_gguf(content: &gguf_file::Content, bytes: &[u8]) -> Result<Self> {
        let mut reader = Cursor::new(bytes);
        let mut tensors = HashMap::with_capacity(content.tensor_infos.len());
        for name in content.tensor_infos.keys() {
            let q = content
                .tensor(&mut reader, name, &Device::Cpu)
                .map_err(|e| Error::tensor(name, format!("unreadable in GGUF file: {e}")))?;
            tensors.insert(name.clone(), Stored::Quant(Arc::new(q)));
        }
        Ok(Self { tensors })
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.tensors.keys()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn get(&self, name: &str) -> Option<&Stored> {
        self.tensors.get(name)
    }

    pub fn insert(&mut self, name: impl Into<String>, t: Stored) {
        self.tensors.insert(name.into(), t);
    }

    /// The stored tensor `name`, checked to have `shape`.
    pub fn lookup(&self, name: &str, shape: &[usize]) -> Result<&Stored> {
        let s = self.tensors.get(name).ok_or_else(|| Error::tensor(name, "missing from the checkpoint"))?;
        if s.dims() != shape {
            return Err(Error::tensor(name, format!("has shape {:?}, expected {:?}", s.dims(), shape)));
        }
        Ok(s)
    }

    /// An f32 tensor of the given shape (dequantized if stored quantized).
    pub fn dense(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self.lookup(name, shape)? {
            Stored::Dense(t) => Ok(t.clone()),
            Stored::Quant(q) => Ok(q.dequantize(&Device::Cpu)?),
        }
    }

    /// Replaces `name` with `t`, stored as the entry it replaces was (a q8_0 weight is
    /// quantized to q8_0 again; a plain one, or a new name, stays f32).
    pub fn insert_like(&mut self, name: &str, t: Tensor) -> Result<()> {
        let stored = match self.tensors.get(name) {
            Some(Stored::Quant(q)) => Stored::Quant(Arc::new(QTensor::quantize(&t, q.dtype())?)),
            _ => Stored::Dense(t),
        };
        self.tensors.insert(name.to_string(), stored);
        Ok(())
    }

    /// A tensor as f32, whatever its shape (dequantized if stored quantized).
    pub fn f32_of(&self, name: &str) -> Result<Tensor> {
        match self.tensors.get(name) {
            Some(Stored::Dense(t)) => Ok(t.clone()),
            Some(Stored::Quant(q)) => Ok(q.dequantize(&Device::Cpu)?),
            None => Err(Error::tensor(name.to_string(), "missing from the checkpoint")),
        }
    }

    /// The GGUF storage type of a tensor (F32 for plain tensors).
    pub fn dtype_of(&self, name: &str) -> Option<GgmlDType> {
        self.tensors.get(name).map(|s| match s {
            Stored::Dense(_) => GgmlDType::F32,
            Stored::Quant(q) => q.dtype(),
        })
    }

    /// All tensors as f32 (for export as safetensors, or to fine-tune a quantized model).
    pub fn to_dense(&self) -> Result<HashMap<String, Tensor>> {
        self.tensors
            .iter()
            .map(|(n, s)| {
                let t = match s {
                    Stored::Dense(t) => t.clone(),
                    Stored::Quant(q) => q.dequantize(&Device::Cpu)?,
                };
                Ok((n.clone(), t))
            })
            .collect()
    }

    /// Bytes the tensors occupy in their stored form.
    pub fn stored_bytes(&self) -> usize {
        self.tensors
            .values()
            .map(|s| match s {
                Stored::Dense(t) => t.elem_count() * 4,
                Stored::Quant(q) => q.storage_size_in_bytes(),
            })
            .sum()
    }
}

/// `model.safetensors` bytes of named f32 tensors.
pub fn serialize(tensors: &[(String, Tensor)]) -> Result<Vec<u8>> {
    let views: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    safetensors::tensor::serialize(views, None).map_err(|e| Error::model(format!("cannot serialise weights: {e}")))
}
