//! Compares our logits with reference logits from `transformers` on a real checkpoint, for the
//! f32 Hugging Face folder and any number of GGUF conversions of it.
//!
//!     python training/reference_logits.py training/runs/minilm /tmp/ref.safetensors
//!     cargo run --release --example compare -- /tmp/ref.safetensors training/runs/minilm m-q8.gguf m-q4.gguf
use candle_core::{DType, Device};
use unmask::Model;

fn main() -> anyhow_free::Result {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reference = candle_core::safetensors::load(&args[0], &Device::Cpu)?;
    let ids = reference["input_ids"].to_dtype(DType::U32)?;
    let want = &reference["logits"];
    for path in &args[1..] {
        let m = Model::load(std::path::Path::new(path))?;
        let got = m.encoder.forward(&ids)?;
        let d = (&got - want)?;
        let max = d.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?;
        let rel = (d.sqr()?.mean_all()?.to_scalar::<f32>()? / want.sqr()?.mean_all()?.to_scalar::<f32>()?).sqrt();
        let a = got.argmax(2)?.flatten_all()?.to_vec1::<u32>()?;
        let b = want.argmax(2)?.flatten_all()?.to_vec1::<u32>()?;
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64;
        println!("{path}: {} · max |Δlogit| {max:.2e} · relative RMS {rel:.2e} · top-1 agreement {:.1}%", m.info().dtype, 100.0 * agree);
    }
    Ok(())
}

mod anyhow_free {
    pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
}
