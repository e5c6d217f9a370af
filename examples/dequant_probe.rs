//! Probe: the same quantized GGUF run through candle's quantized matmul and through
//! dequantized f32 weights, against transformers' reference logits. Separates weight
//! rounding from activation quantization inside the quantized matmul.
//!     cargo run --release --example dequant_probe -- reference.safetensors model.gguf
use candle_core::{DType, Device};
use unmask::model::weights::{Stored, WeightStore};
use unmask::Model;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let r = candle_core::safetensors::load(&a[0], &Device::Cpu)?;
    let ids = r["input_ids"].to_dtype(DType::U32)?;
    let want = r["logits"].argmax(2)?.flatten_all()?.to_vec1::<u32>()?;
    let q = Model::from_gguf_bytes(&std::fs::read(&a[1])?)?;
    let mut dense = WeightStore::default();
    for (n, t) in q.store.to_dense()? {
        dense.insert(n, Stored::Dense(t));
    }
    let d = Model::from_parts("dequantized", q.config().clone(), dense, q.codec.json())?;
    for (label, m) in [("quantized matmul", &q), ("dequantized f32", &d)] {
        let got = m.encoder.forward(&ids)?.argmax(2)?.flatten_all()?.to_vec1::<u32>()?;
        let agree = got.iter().zip(&want).filter(|(x, y)| x == y).count() as f64 / want.len() as f64;
        println!("{label}: top-1 agreement {:.1}%", 100.0 * agree);
    }
    Ok(())
}
