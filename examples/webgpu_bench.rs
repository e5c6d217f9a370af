//! Benchmark (not a test) of the WebGPU kernels through wgpu on whatever adapter this machine
//! has (lavapipe here; a real GPU where one is lent): the matmul at the default model's shapes
//! in GFLOP/s, and a full forward of a model against the CPU path.
//!   cargo run --release --features webgpu --example webgpu_bench -- [MODEL]
use std::time::Instant;

use unmask::backend::webgpu::{Gpu, GpuEncoder};

fn main() -> unmask::Result<()> {
    let gpu = Gpu::new_blocking()?;
    println!("adapter: {}", gpu.adapter);
    for (m, k, n) in [(256usize, 384usize, 384usize), (256, 384, 1536), (256, 1536, 384), (141, 384, 30522)] {
        let x = gpu.upload("x", &vec![0.01f32; m * k]);
        let w = gpu.upload("w", &vec![0.02f32; n * k]);
        let b = gpu.upload("b", &vec![0.0f32; n]);
        let out = gpu.scratch("out", m * n);
        let (dq, ds) = (gpu.upload_u32("unused", &[]), gpu.upload("unused", &[]));
        let run = || {
            let mut enc = gpu.encoder();
            for _ in 0..5 {
                gpu.dispatch(&mut enc, "matmul", &[&x, &w, &b, &out, &dq, &ds], [m as u32, n as u32, k as u32, 1, 0, 0, 0, 0], (n.div_ceil(64) as u32, m.div_ceil(64) as u32));
            }
            pollster::block_on(gpu.read(enc, &out, 1)).map(|_| ())
        };
        run()?;
        let t0 = Instant::now();
        run()?;
        let s = t0.elapsed().as_secs_f64() / 5.0;
        println!("matmul {m}×{k}×{n}: {:.2} ms, {:.1} GFLOP/s", s * 1e3, 2.0 * (m * k * n) as f64 / s / 1e9);
    }
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/default.gguf".into());
    let model = unmask::Model::load(std::path::Path::new(&path))?;
    let enc = GpuEncoder::new(Gpu::new_blocking()?, &model.encoder, Some(&model.store))?;
    let t = model.config().max_sequence_len().min(256);
    let ids: Vec<u32> = (0..t as u32).map(|i| 1000 + i % 500).map(|i| i % model.config().vocab_size as u32).collect();
    let masked: Vec<usize> = (0..t).step_by(2).collect();
    enc.logits_at_blocking(&ids, &masked)?;
    let t0 = Instant::now();
    let gpu_logits = enc.logits_at_blocking(&ids, &masked)?;
    let g = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let cpu_logits = model.logits_at(&ids, &masked)?;
    let c = t1.elapsed().as_secs_f64();
    let d = gpu_logits.iter().zip(&cpu_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    println!("forward {t} tokens, logits for {} rows: GPU {:.0} ms, CPU {:.0} ms, max |Δlogit| {d:.1e}", masked.len(), g * 1e3, c * 1e3);
    Ok(())
}
