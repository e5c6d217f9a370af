//! Benchmark (not a test) of the WebGPU kernels through wgpu on whatever adapter this machine
//! has (lavapipe here; a real GPU where one is lent): the matmul at the default model's shapes
//! (and one large square one, where a vendor BLAS reaches its peak) in GFLOP/s, a full forward
//! against the CPU path, and a 10-step generation whose logits all come from the GPU.
//!   cargo run --release --features webgpu --example webgpu_bench -- [MODEL] [GEN_TOKENS]
//! `bench/cublas.py` times the same shapes with cuBLAS (PyTorch) for the ratio.
use std::time::Instant;

use unmask::backend::webgpu::{kernels, split_k, Gpu, SPLIT_TARGET};
use unmask::model::GpuEncoder;
use unmask::diffusion::{self, Canvas, Denoiser, SampleOptions};

/// The GPU encoder as a sampler backend (blocking on each step's readback); with `rank`, the
/// top-k is ranked on the GPU and only that comes back.
struct OnGpu<'a> {
    enc: &'a GpuEncoder,
    vocab: usize,
    rank: bool,
}

impl Denoiser for OnGpu<'_> {
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn logits(&self, ids: &[u32], positions: &[usize]) -> unmask::Result<Vec<f32>> {
        self.enc.logits_at_blocking(ids, positions)
    }
    fn ranked(&self, ids: &[u32], positions: &[usize], s: &unmask::diffusion::Scoring) -> unmask::Result<Option<unmask::diffusion::Ranked>> {
        if !self.rank {
            return Ok(None);
        }
        self.enc.ranked_at_blocking(ids, positions, s).map(Some)
    }
}

fn main() -> unmask::Result<()> {
    let gpu = Gpu::new_blocking()?;
    println!("adapter: {}", gpu.adapter);
    let big = std::env::var("UNMASK_BENCH_BIG").map(|v| v != "0").unwrap_or(false);
    let mut shapes = vec![(256usize, 384usize, 384usize), (256, 384, 1536), (256, 1536, 384), (141, 384, 16384), (141, 384, 30522)];
    if big {
        shapes.extend([(2048, 2048, 2048), (4096, 4096, 4096)]);
    }
    for (m, k, n) in shapes {
        let x = gpu.upload("x", &vec![0.01f32; m * k]);
        let w = gpu.upload("w", &vec![0.02f32; n * k]);
        let b = gpu.upload("b", &vec![0.0f32; n]);
        let out = gpu.scratch("out", m * n);
        let (dq, ds) = (gpu.upload_u32("unused", &[]), gpu.upload("unused", &[]));
        let mm = kernels::Matmul { m: m as u32, n: n as u32, k: k as u32, k_slice: 0, has_bias: 1, act: kernels::act::NONE, q8: 0 };
        // Many dispatches per submission so launch and readback latency do not dominate.
        let reps = std::env::var("UNMASK_BENCH_REPS").ok().and_then(|v| v.parse().ok()).unwrap_or(if m * k * n > 1 << 30 { 10 } else { 50 });
        // Unsplit, then split along k as the encoder would (when it would).
        let split = split_k((n.div_ceil(64) * m.div_ceil(64)) as u32, k, SPLIT_TARGET, 128);
        let part = gpu.scratch("part", split.map_or(1, |(_, s)| s) * m * n);
        let time = |split: Option<(usize, usize)>| -> unmask::Result<f64> {
            let run = || {
                let mut rec = gpu.encoder();
                for _ in 0..reps {
                    let tiles = (n.div_ceil(64) as u32, m.div_ceil(64) as u32);
                    match split {
                        None => gpu.dispatch(&mut rec, mm, &[&x, &w, &b, &out, &dq, &ds], tiles),
                        Some((len, s)) => {
                            gpu.dispatch(&mut rec, kernels::Matmul { k_slice: len as u32, ..mm }, &[&x, &w, &b, &part, &dq, &ds], (tiles.0, tiles.1, s as u32));
                            gpu.dispatch(&mut rec, kernels::SplitSum { len: (m * n) as u32, n: n as u32, splits: s as u32, has_bias: 1, act: kernels::act::NONE }, &[&part, &b, &out], Gpu::groups_for(m * n));
                        }
                    }
                }
                pollster::block_on(gpu.read(rec, &out, 1)).map(|_| ())
            };
            run()?;
            let mut best = f64::MAX;
            for _ in 0..3 {
                let t0 = Instant::now();
                run()?;
                best = best.min(t0.elapsed().as_secs_f64() / reps as f64);
            }
            Ok(best)
        };
        let flop = 2.0 * (m * k * n) as f64;
        let one = time(None)?;
        print!("matmul {m}×{k}×{n}: {:.3} ms, {:.1} GFLOP/s", one * 1e3, flop / one / 1e9);
        if let Some((len, s)) = split {
            let t = time(split)?;
            print!("; split-K {s} × {len}: {:.3} ms, {:.1} GFLOP/s", t * 1e3, flop / t / 1e9);
        }
        println!();
    }
    // Fixed cost per dispatch: 200 dispatches of a 1×1×1 matmul, encoding (CPU) apart from
    // submission + execution + wait.
    {
        let one = gpu.upload("one", &[1.0f32]);
        let out = gpu.scratch("out", 1);
        let (dq, ds) = (gpu.upload_u32("unused", &[]), gpu.upload("unused", &[]));
        let mut best = (f64::MAX, f64::MAX);
        for _ in 0..4 {
            let t0 = Instant::now();
            let mut enc = gpu.encoder();
            for _ in 0..200 {
                gpu.dispatch(&mut enc, kernels::Matmul { m: 1, n: 1, k: 1, k_slice: 0, has_bias: 1, act: kernels::act::NONE, q8: 0 }, &[&one, &one, &one, &out, &dq, &ds], (1, 1));
            }
            let t1 = Instant::now();
            pollster::block_on(gpu.read(enc, &out, 1))?;
            best = (best.0.min((t1 - t0).as_secs_f64()), best.1.min(t1.elapsed().as_secs_f64()));
        }
        println!("per dispatch: encoding {:.1} µs, submit + run + wait {:.1} µs", best.0 / 200.0 * 1e6, best.1 / 200.0 * 1e6);
    }
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/default.gguf".into());
    let model = unmask::Model::load(std::path::Path::new(&path))?;
    let enc = GpuEncoder::new(Gpu::new_blocking()?, &model.encoder)?;
    let t = model.config().max_sequence_len().min(256);
    let ids: Vec<u32> = (0..t as u32).map(|i| 1000 + i % 500).map(|i| i % model.config().vocab_size as u32).collect();
    let masked: Vec<usize> = (0..t).step_by(2).collect();
    let t1 = Instant::now();
    let cpu_logits = model.logits_at(&ids, &masked)?;
    let c = t1.elapsed().as_secs_f64();
    let gen: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(256);
    let max = model.config().max_sequence_len();
    let banned = model.codec.banned_ids();
    let mut text = String::new();
    // Split-K off, then the default policy; logits read back whole, then ranked on the GPU.
    for (what, target, rank) in [("no split-K, whole rows", 0, false), ("split-K, whole rows", SPLIT_TARGET, false), ("split-K, top-k on the GPU", SPLIT_TARGET, true)] {
        enc.ops.set_split(target, 128);
        let denoiser = OnGpu { enc: &enc, vocab: model.config().vocab_size, rank };
        if !rank {
            enc.logits_at_blocking(&ids, &masked)?;
            let mut best = f64::MAX;
            let mut gpu_logits = Vec::new();
            for _ in 0..5 {
                let t0 = Instant::now();
                gpu_logits = enc.logits_at_blocking(&ids, &masked)?;
                best = best.min(t0.elapsed().as_secs_f64());
            }
            let d = gpu_logits.iter().zip(&cpu_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            println!("forward {t} tokens, logits for {} rows ({what}): GPU {:.2} ms best of 5, CPU {:.0} ms, max |Δlogit| {d:.1e}", masked.len(), best * 1e3, c * 1e3);
        }
        // A whole generation: [CLS] prompt + masks up to `gen` tokens, 10 steps (the seed's recipe).
        let mut times = Vec::new();
        for seed in 0..4u64 {
            let canvas = Canvas::from_prompt(&model.codec, "the old house", gen, max)?;
            let opts = SampleOptions { steps: 10, seed, ..Default::default() };
            let t0 = Instant::now();
            let out = diffusion::generate(&denoiser, canvas, &banned, &opts, |_| true)?;
            times.push(t0.elapsed().as_secs_f64());
            text = model.codec.decode(&out.canvas.ids);
        }
        let first = times.remove(0);
        times.sort_by(f64::total_cmp);
        println!("generation {gen} tokens × 10 steps on the GPU ({what}): {:.1} ms median (first {:.1} ms)", times[times.len() / 2] * 1e3, first * 1e3);
    }
    println!("sample: {}", text.chars().take(200).collect::<String>());
    Ok(())
}
