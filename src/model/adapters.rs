//! LoRA adapters saved apart from their base model: a small GGUF of the `A`/`B` pairs, their
//! scale, and a checksum of the base model's weights, so that adapters are only ever merged
//! into the model they were trained on.

use std::io::Cursor;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::weights::{Stored, WeightStore};
use super::Model;
use crate::error::{Error, Result};

pub const ARCH: &str = "unmask-adapters";
const KEY_BASE: &str = "unmask.adapters.base_checksum";
const KEY_BASE_NAME: &str = "unmask.adapters.base_name";
const KEY_SCALE: &str = "unmask.adapters.scale";
const SUFFIX_A: &str = ".lora_a";
const SUFFIX_B: &str = ".lora_b";

/// One adapter: the weight it updates, `A [rank, in]`, `B [out, rank]`.
pub struct Pair {
    pub weight: String,
    pub a: Tensor,
    pub b: Tensor,
}

pub struct Adapters {
    /// [`checksum`] of the base model's weights.
    pub base: String,
    pub base_name: String,
    /// The update is `scale · B · A`.
    pub scale: f64,
    pub pairs: Vec<Pair>,
}

/// A checksum of a store's weights as stored (FNV-1a, 64 bits, over names, shapes and bytes
/// in name order): the same file loaded twice gives the same value, any changed weight
/// another.
pub fn checksum(store: &WeightStore) -> Result<String> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    let mut names: Vec<&String> = store.names().collect();
    names.sort();
    for n in names {
        eat(n.as_bytes());
        match store.get(n).expect("listed names are stored") {
            Stored::Dense(t) => {
                for d in t.dims() {
                    eat(&(*d as u64).to_le_bytes());
                }
                let v = t.flatten_all()?.to_vec1::<f32>()?;
                v.iter().for_each(|x| eat(&x.to_le_bytes()));
            }
            Stored::Quant(q) => {
                for d in q.shape().dims() {
                    eat(&(*d as u64).to_le_bytes());
                }
                eat(&q.data()?);
            }
        }
    }
    Ok(format!("{h:016x}"))
}

impl Adapters {
    /// The adapters as a GGUF file (f32 tensors `{weight}.lora_a` / `.lora_b`).
    pub fn to_gguf(&self) -> Result<Vec<u8>> {
        let mut q = Vec::with_capacity(self.pairs.len() * 2);
        for p in &self.pairs {
            let stem = p.weight.trim_end_matches(".weight");
            q.push((format!("{stem}{SUFFIX_A}"), QTensor::quantize(&p.a, GgmlDType::F32)?));
            q.push((format!("{stem}{SUFFIX_B}"), QTensor::quantize(&p.b, GgmlDType::F32)?));
        }
        let arch = gguf_file::Value::String(ARCH.into());
        let base = gguf_file::Value::String(self.base.clone());
        let name = gguf_file::Value::String(self.base_name.clone());
        let scale = gguf_file::Value::F64(self.scale);
        let meta: Vec<(&str, &gguf_file::Value)> =
            vec![("general.architecture", &arch), (KEY_BASE, &base), (KEY_BASE_NAME, &name), (KEY_SCALE, &scale)];
        let refs: Vec<(&str, &QTensor)> = q.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut out = Cursor::new(Vec::new());
        gguf_file::write(&mut out, &meta, &refs)?;
        Ok(out.into_inner())
    }

    /// Reads an adapters file written by [`Adapters::to_gguf`].
    pub fn from_gguf(bytes: &[u8]) -> Result<Self> {
        let bad = |why: String| Error::model(format!("adapters file: {why}"));
        if bytes.len() < 4 || &bytes[..4] != b"GGUF" {
            return Err(bad("not a GGUF file (bad magic bytes)".into()));
        }
        let content = gguf_file::Content::read(&mut Cursor::new(bytes)).map_err(|e| bad(format!("corrupted or truncated: {e}")))?;
        let text = |key: &str| match content.metadata.get(key) {
            Some(gguf_file::Value::String(s)) => Ok(s.clone()),
            _ => Err(bad(format!("no `{key}`: not adapters saved by Unmask"))),
        };
        if text("general.architecture")? != ARCH {
            return Err(bad(format!("its architecture is not `{ARCH}` (a model file? load it as a model)")));
        }
        let scale = match content.metadata.get(KEY_SCALE) {
            Some(gguf_file::Value::F64(s)) if s.is_finite() => *s,
            _ => return Err(bad(format!("no finite `{KEY_SCALE}`"))),
        };
        let mut names: Vec<&String> = content.tensor_infos.keys().filter(|n| n.ends_with(SUFFIX_A)).collect();
        names.sort();
        let read = |n: &str| -> Result<Tensor> {
            let q = content.tensor(&mut Cursor::new(bytes), n, &Device::Cpu).map_err(|e| bad(format!("tensor `{n}`: {e}")))?;
            Ok(q.dequantize(&Device::Cpu)?)
        };
        let mut pairs = Vec::new();
        for a_name in names {
            let stem = a_name.trim_end_matches(SUFFIX_A);
            let b_name = format!("{stem}{SUFFIX_B}");
            if !content.tensor_infos.contains_key(&b_name) {
                return Err(bad(format!("`{a_name}` has no `{b_name}`")));
            }
            pairs.push(Pair { weight: format!("{stem}.weight"), a: read(a_name)?, b: read(&b_name)? });
        }
        if pairs.is_empty() {
            return Err(bad("it holds no adapters".into()));
        }
        Ok(Self { base: text(KEY_BASE)?, base_name: text(KEY_BASE_NAME)?, scale, pairs })
    }

    /// `model` with the adapters merged into its weights, each stored as `model` stores it.
    /// Refused unless the adapters were trained on this very model and fit its shapes.
    pub fn merge_into(&self, model: &Model) -> Result<Model> {
        let ours = checksum(&model.store)?;
        if ours != self.base {
            return Err(Error::model(format!(
                "these adapters were trained on another base model (`{}`, weights checksum {}), not on `{}` (checksum {ours}): load the model they were trained on",
                self.base_name, self.base, model.name
            )));
        }
        let mut store = model.store.clone();
        for p in &self.pairs {
            let w = store.f32_of(&p.weight).map_err(|_| Error::tensor(p.weight.clone(), "has an adapter but is not a weight of this model"))?;
            let (out, inp) = w.dims2()?;
            let (r, a_in) = p.a.dims2()?;
            let (b_out, b_r) = p.b.dims2()?;
            if (a_in, b_out, b_r) != (inp, out, r) {
                return Err(Error::tensor(
                    p.weight.clone(),
                    format!("is {out} × {inp} but its adapter is B {b_out} × {b_r} · A {r} × {a_in}"),
                ));
            }
            let merged = (w + (p.b.matmul(&p.a)? * self.scale)?)?;
            store.insert_like(&p.weight, merged)?;
        }
        Model::from_parts(&model.name, model.config().clone(), store, model.codec.json())
    }
}
