//! The WebGPU kernels against the CPU path, natively through wgpu on Vulkan (Mesa's lavapipe
//! in CI: `XDG_RUNTIME_DIR=/tmp`, `mesa-vulkan-drivers`). Tiny shapes, including sizes that
//! are not multiples of the kernels' tiles. No adapter is a failure, not a skip.
#![cfg(feature = "webgpu")]

mod common;

use common::{fixture, FAMILIES};
use unmask::backend::gemm::matmul_t;
use unmask::backend::par::Out;
use unmask::backend::webgpu::{kernels, Gpu};
use unmask::model::GpuEncoder;
use unmask::diffusion::rng::Rng;
use unmask::Model;

fn gpu() -> Gpu {
    Gpu::new_blocking().expect("a WebGPU adapter (lavapipe in CI)")
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn matmul_kernel_matches_the_cpu_with_bias_and_activations() {
    let g = gpu();
    let mut rng = Rng::new(5);
    for &(m, k, n) in &[(1usize, 1usize, 1usize), (5, 7, 3), (70, 33, 130), (64, 64, 64), (3, 130, 65)] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() - 0.5).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.next_f32() - 0.5).collect();
        let mut want = vec![0f32; m * n];
        matmul_t(&x, &w, Some(&b), m, k, n, &Out::new(&mut want));
        for act in 0..4u32 {
            let (xb, wb, bb) = (g.upload("x", &x), g.upload("w", &w), g.upload("b", &b));
            let (dq, ds) = (g.upload_u32("unused", &[]), g.upload("unused", &[]));
            let out = g.scratch("out", m * n);
            let mut enc = g.encoder();
            let params = kernels::Matmul { m: m as u32, n: n as u32, k: k as u32, k_slice: 0, has_bias: 1, act, q8: 0 };
            g.dispatch(&mut enc, params, &[&xb, &wb, &bb, &out, &dq, &ds], (n.div_ceil(64) as u32, m.div_ceil(64) as u32));
            let got = pollster::block_on(g.read(enc, &out, m * n)).unwrap();
            let expect: Vec<f32> = want
                .iter()
                .map(|&v| match act {
                    1 => 0.5 * v * (1.0 + erf(v / std::f32::consts::SQRT_2)),
                    2 => 0.5 * v * (1.0 + (0.797_884_6 * (v + 0.044715 * v * v * v)).tanh()),
                    3 => v.max(0.0),
                    _ => v,
                })
                .collect();
            let d = max_diff(&got, &expect);
            assert!(d <= 1e-5 * (k as f32).sqrt() + 1e-6, "{m}×{k}×{n} act {act}: max diff {d}");
        }
    }
}

#[test]
fn split_k_matmul_sums_its_slices_like_one_pass() {
    // k not a multiple of the slice or of the kernel's 16; slices of 16, 48 and 64.
    let g = gpu();
    let mut rng = Rng::new(9);
    for &(m, k, n, len) in &[(5usize, 130usize, 67usize, 48usize), (70, 64, 3, 16), (1, 200, 130, 64), (64, 33, 64, 16)] {
        let x: Vec<f32> = (0..m * k).map(|_| rng.next_f32() - 0.5).collect();
        let w: Vec<f32> = (0..n * k).map(|_| rng.next_f32() - 0.5).collect();
        let b: Vec<f32> = (0..n).map(|_| rng.next_f32() - 0.5).collect();
        let mut want = vec![0f32; m * n];
        matmul_t(&x, &w, Some(&b), m, k, n, &Out::new(&mut want));
        let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        let splits = k.div_ceil(len);
        let (xb, wb, bb) = (g.upload("x", &x), g.upload("w", &w), g.upload("b", &b));
        let (dq, ds) = (g.upload_u32("unused", &[]), g.upload("unused", &[]));
        let (part, out) = (g.scratch("part", splits * m * n), g.scratch("out", m * n));
        let mut rec = g.encoder();
        // Bias and ReLU: applied once, after the sum.
        let (m32, n32) = (m as u32, n as u32);
        let mm = kernels::Matmul { m: m32, n: n32, k: k as u32, k_slice: len as u32, has_bias: 1, act: kernels::act::RELU, q8: 0 };
        g.dispatch(&mut rec, mm, &[&xb, &wb, &bb, &part, &dq, &ds], (n.div_ceil(64) as u32, m.div_ceil(64) as u32, splits as u32));
        let sum = kernels::SplitSum { len: m32 * n32, n: n32, splits: splits as u32, has_bias: 1, act: kernels::act::RELU };
        g.dispatch(&mut rec, sum, &[&part, &bb, &out], Gpu::groups_for(m * n));
        assert_eq!(rec.launches(), 2);
        let got = pollster::block_on(g.read(rec, &out, m * n)).unwrap();
        let d = max_diff(&got, &want);
        assert!(d <= 1e-5 * (k as f32).sqrt() + 1e-6, "{m}×{k}×{n} in slices of {len}: max diff {d}");
    }
}

/// erf for the reference (libm-quality series is overkill at these tolerances).
fn erf(x: f32) -> f32 {
    let x = x as f64;
    // Abramowitz–Stegun 7.1.26 in f64, like the kernel but without f32 rounding.
    let t = 1.0 / (1.0 + 0.3275911 * x.abs());
    let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * (-x * x).exp();
    (y * x.signum()) as f32
}

/// Softmax attention against a plain f64 reference: one chunk of keys and several (the kernel
/// works through keys 256 at a time with an online rescale), and head sizes below and above 64
/// (a thread holds one or two of a head's dimensions).
#[test]
fn attention_kernel_matches_a_reference_across_key_chunks_and_head_sizes() {
    let g = gpu();
    let mut rng = Rng::new(21);
    for &(t, heads, hd) in &[(1usize, 1usize, 1usize), (7, 3, 16), (300, 2, 40), (600, 1, 96)] {
        let w = heads * hd;
        let mk = |rng: &mut Rng| -> Vec<f32> { (0..t * w).map(|_| rng.next_f32() * 4.0 - 2.0).collect() };
        let (q, k, v) = (mk(&mut rng), mk(&mut rng), mk(&mut rng));
        let scale = 1.0 / (hd as f32).sqrt();
        let (qb, kb, vb) = (g.upload("q", &q), g.upload("k", &k), g.upload("v", &v));
        let out = g.scratch("out", t * w);
        let mut enc = g.encoder();
        let params = kernels::Attention { keys: t as u32, heads: heads as u32, head_dim: hd as u32, scale };
        g.dispatch(&mut enc, params, &[&qb, &kb, &vb, &out], (t as u32, heads as u32));
        let got = pollster::block_on(g.read(enc, &out, t * w)).unwrap();
        let mut want = vec![0f32; t * w];
        for h in 0..heads {
            for i in 0..t {
                let s: Vec<f64> = (0..t)
                    .map(|j| (0..hd).map(|d| q[i * w + h * hd + d] as f64 * k[j * w + h * hd + d] as f64).sum::<f64>() * scale as f64)
                    .collect();
                let mx = s.iter().cloned().fold(f64::MIN, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for d in 0..hd {
                    want[i * w + h * hd + d] = ((0..t).map(|j| e[j] * v[j * w + h * hd + d] as f64).sum::<f64>() / z) as f32;
                }
            }
        }
        let d = max_diff(&got, &want);
        assert!(d <= 2e-5, "t {t}, heads {heads}, hd {hd}: max diff {d}");
    }
}

#[test]
fn layer_norm_kernel_matches_the_cpu_with_and_without_residual() {
    let g = gpu();
    let mut rng = Rng::new(9);
    for &(rows, h) in &[(1usize, 1usize), (3, 37), (5, 200)] {
        let x: Vec<f32> = (0..rows * h).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
        let r: Vec<f32> = (0..rows * h).map(|_| rng.next_f32() - 0.5).collect();
        let gam: Vec<f32> = (0..h).map(|_| rng.next_f32() + 0.5).collect();
        let bet: Vec<f32> = (0..h).map(|_| rng.next_f32() - 0.5).collect();
        for residual in [false, true] {
            let (xb, rb, gb, bb) = (g.upload("x", &x), g.upload("r", &r), g.upload("g", &gam), g.upload("b", &bet));
            let (y, s) = (g.scratch("y", rows * h), g.scratch("s", rows * h));
            let mut enc = g.encoder();
            let params = kernels::LayerNorm { rows: rows as u32, width: h as u32, eps: 1e-5, add_residual: residual as u32, keep_sum: 1 };
            g.dispatch(&mut enc, params, &[&xb, &rb, &gb, &bb, &y, &s], (rows as u32, 1));
            let got = pollster::block_on(g.read(enc, &y, rows * h)).unwrap();
            let mut want = Vec::new();
            for i in 0..rows {
                let v: Vec<f32> = (0..h).map(|j| x[i * h + j] + if residual { r[i * h + j] } else { 0.0 }).collect();
                let mean = v.iter().sum::<f32>() / h as f32;
                let var = v.iter().map(|a| (a - mean) * (a - mean)).sum::<f32>() / h as f32;
                want.extend((0..h).map(|j| (v[j] - mean) / (var + 1e-5).sqrt() * gam[j] + bet[j]));
            }
            let d = max_diff(&got, &want);
            assert!(d <= 1e-4, "{rows}×{h} residual {residual}: {d}");
        }
    }
}

#[test]
fn the_whole_forward_matches_the_cpu_for_every_family() {
    for family in FAMILIES {
        let model = Model::load(&fixture(family)).unwrap();
        let gpu_enc = GpuEncoder::new(gpu(), &model.encoder).unwrap();
        let n = model.config().max_sequence_len().min(37);
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 5) % model.config().vocab_size as u32).collect();
        // Out of order and repeated: the last layer runs on exactly these rows.
        let positions = [n - 1, 0, n / 2, 1, n / 2];
        let want = model.logits_at(&ids, &positions).unwrap();
        let got = gpu_enc.logits_at_blocking(&ids, &positions).unwrap();
        let d = max_diff(&got, &want);
        // Every matmul split along k (slices of 32: 2–4 per product here) gives the same.
        gpu_enc.ops.set_split(10_000, 32);
        let split = gpu_enc.logits_at_blocking(&ids, &positions).unwrap();
        gpu_enc.ops.set_split(0, 128);
        let ds = max_diff(&split, &want);
        assert!(ds <= 1e-3, "{family} split-K: max |Δlogit| {ds}");
        // A second forward of the same length reuses every scratch buffer and agrees.
        let pooled = gpu_enc.ops.pooled_buffers();
        assert!(pooled > 10);
        assert_eq!(gpu_enc.logits_at_blocking(&ids, &positions).unwrap(), got);
        assert_eq!(gpu_enc.ops.pooled_buffers(), pooled, "no new scratch buffers for a same-length step");
        println!("{family}: max |Δlogit| GPU vs CPU = {d:.2e} on {}", gpu_enc.gpu().adapter);
        assert!(d <= 1e-3, "{family}: max |Δlogit| {d}");
        assert!(gpu_enc.logits_at_blocking(&ids, &[]).unwrap().is_empty());
    }
}

#[test]
fn q8_0_weights_stay_quantized_on_the_gpu_and_match_the_cpu() {
    // The fixture as a q8_0 GGUF: the GPU reads the int8 blocks and dequantizes them while
    // loading tiles; the CPU dequantizes once at load. Same numbers either way.
    use unmask::model::gguf::WeightDtype;
    for family in ["bert", "roberta-prelayernorm"] {
        let f32_model = Model::load(&fixture(family)).unwrap();
        let mut bytes = std::io::Cursor::new(Vec::new());
        f32_model.write_gguf(&mut bytes, WeightDtype::Q8_0).unwrap();
        let model = Model::from_gguf_bytes(&bytes.into_inner()).unwrap();
        let e = GpuEncoder::new(gpu(), &model.encoder).unwrap();
        assert!(e.quantized_matrices() >= 4 * model.config().num_hidden_layers, "{family}: q8 matrices on the GPU");
        let n = model.config().max_sequence_len().min(29);
        let ids: Vec<u32> = (0..n as u32).map(|i| (i * 13 + 3) % model.config().vocab_size as u32).collect();
        let positions: Vec<usize> = (0..n).collect();
        let want = model.logits_at(&ids, &positions).unwrap();
        let d = max_diff(&e.logits_at_blocking(&ids, &positions).unwrap(), &want);
        println!("{family} q8_0: max |Δlogit| GPU vs CPU = {d:.2e}");
        assert!(d <= 1e-3, "{family} q8_0: {d}");
        // Split along k, each slice dequantizing its own blocks.
        e.ops.set_split(10_000, 32);
        let d = max_diff(&e.logits_at_blocking(&ids, &positions).unwrap(), &want);
        assert!(d <= 1e-3, "{family} q8_0 split-K: {d}");
    }
}

#[test]
fn ranking_on_the_gpu_matches_the_cpu_reference() {
    // The GPU's own logits ranked by the CPU reference and by the top_k kernel: the same ids
    // in the same order, the same scaled logits, the same normaliser. k from 1 to the whole
    // vocabulary; banned ids; a temperature.
    use unmask::diffusion::sampling::rank;
    use unmask::diffusion::Scoring;
    let model = Model::load(&fixture("roberta")).unwrap();
    let e = GpuEncoder::new(gpu(), &model.encoder).unwrap();
    let vocab = model.config().vocab_size;
    let n = model.config().max_sequence_len().min(40);
    let ids: Vec<u32> = (0..n as u32).map(|i| (i * 29 + 11) % vocab as u32).collect();
    let positions: Vec<usize> = (0..n).rev().step_by(3).collect();
    let logits = e.logits_at_blocking(&ids, &positions).unwrap();
    let banned = [0u32, 1, 2, 3, 7, (vocab - 1) as u32];
    // All but three ids banned with k = 10: excluded ids fill the tail, in id order on both.
    // A repetition penalty on a third of the vocabulary (the canvas' ids, say).
    let most: Vec<u32> = (0..vocab as u32).filter(|t| ![4, 100, 200].contains(t)).collect();
    let seen: Vec<u32> = (0..vocab as u32).step_by(3).collect();
    let cases = [(1usize, 1.0f32, &banned[..], 1.0f32), (50, 0.7, &banned, 1.0), (256, 1.3, &banned, 1.0), (10, 1.0, &most, 1.0), (50, 0.8, &banned, 1.4)];
    for (k, temperature, banned, repetition_penalty) in cases {
        let s = Scoring { k, temperature, banned: banned.to_vec(), repetition_penalty, seen: seen.clone() };
        let want = rank(&logits, vocab, &s);
        let got = e.ranked_at_blocking(&ids, &positions, &s).unwrap();
        assert_eq!(got.k, k);
        assert_eq!(got.rows(), positions.len());
        assert_eq!(got.ids, want.ids, "k {k} penalty {repetition_penalty}");
        assert_eq!(got.scaled, want.scaled, "k {k}");
        for (a, b) in got.log_z.iter().zip(&want.log_z) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "k {k}: log_z {a} vs {b}");
        }
        assert!(got.ids.chunks(k).all(|r| r.iter().take(k.min(vocab - banned.len())).all(|t| !banned.contains(t))));
        assert!(got.scaled.chunks(k).all(|r| r.windows(2).all(|w| w[0] >= w[1])));
    }
    // The penalty changed the ranking (else the case above proves nothing).
    let plain = Scoring { k: 50, temperature: 0.8, banned: banned.to_vec(), repetition_penalty: 1.0, seen: seen.clone() };
    let pen = Scoring { repetition_penalty: 1.4, ..plain.clone() };
    assert_ne!(rank(&logits, vocab, &plain).ids, rank(&logits, vocab, &pen).ids);
    // Every id banned: the normaliser says so (NaN) and the sampler falls back.
    let all = Scoring { k: 3, temperature: 1.0, banned: (0..vocab as u32).collect(), repetition_penalty: 1.0, seen: vec![] };
    let r = e.ranked_at_blocking(&ids, &positions[..1], &all).unwrap();
    assert!(r.log_z[0].is_nan());
    // Nonsense k or temperature: errors, and the encoder still works.
    let bad = |k, temperature, repetition_penalty| Scoring { k, temperature, banned: vec![], repetition_penalty, seen: vec![1] };
    for s in [bad(0, 1.0, 1.0), bad(257, 1.0, 1.0), bad(5, 0.0, 1.0), bad(5, 1.0, 0.0), bad(5, 1.0, f32::NAN)] {
        assert!(e.ranked_at_blocking(&ids, &positions, &s).is_err(), "{s:?}");
    }
    assert_eq!(e.logits_at_blocking(&ids, &positions).unwrap(), logits);
}

#[test]
fn a_generation_ranked_on_the_gpu_equals_one_sampled_from_whole_rows() {
    // The sampler fed the GPU's ranking, and fed the GPU's whole logit rows: same tokens.
    use unmask::diffusion::{self, Canvas, Denoiser, SampleOptions};
    struct Whole<'a>(&'a GpuEncoder, usize);
    impl Denoiser for Whole<'_> {
        fn vocab_size(&self) -> usize {
            self.1
        }
        fn logits(&self, ids: &[u32], positions: &[usize]) -> unmask::Result<Vec<f32>> {
            self.0.logits_at_blocking(ids, positions)
        }
    }
    let model = Model::load(&fixture("bert")).unwrap();
    let e = GpuEncoder::new(gpu(), &model.encoder).unwrap();
    let vocab = model.config().vocab_size;
    let banned = model.codec.banned_ids();
    for (strategy, repetition_penalty) in [("random", 1.0), ("confidence", 1.0), ("confidence", 1.3)] {
        // No prior penalty: with it the device hands over whole rows instead of ranking.
        let (strategy, prior_penalty) = (strategy.parse().unwrap(), 0.0);
        let opts = SampleOptions { steps: 6, seed: 3, candidates: 3, strategy, repetition_penalty, prior_penalty, ..Default::default() };
        let run = |d: &dyn Denoiser| {
            let canvas = Canvas::from_prompt(&model.codec, "the old", 24, model.config().max_sequence_len()).unwrap();
            let mut steps = Vec::new();
            let out = diffusion::generate(d, canvas, &banned, &opts, |s| {
                steps.push((s.revealed.clone(), s.candidates.iter().map(|c| c.iter().map(|x| x.0).collect::<Vec<_>>()).collect::<Vec<_>>()));
                true
            })
            .unwrap();
            (out.canvas.ids, steps)
        };
        // The encoder itself is the ranking backend.
        assert_eq!(run(&e), run(&Whole(&e, vocab)), "{strategy} penalty {repetition_penalty}");
    }
}

#[test]
fn the_cli_generates_on_the_gpu_like_on_the_cpu() {
    // `unmask generate --device gpu`: greedy, so the same text as the CPU's, with the GPU
    // ranking (no prior penalty) and with it handing over whole rows (prior penalty).
    let dir = fixture("roberta-prelayernorm");
    let run = |device: &str, prior: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_unmask"))
            .args(["generate", "-m", dir.to_str().unwrap(), "-p", "The cat", "-n", "12", "--steps", "4", "--top-k", "1"])
            .args(["--strategy", "confidence", "--repetition-penalty", "1.3", "--prior-penalty", prior, "--device", device])
            .env("XDG_RUNTIME_DIR", std::env::var("XDG_RUNTIME_DIR").unwrap_or_else(|_| "/tmp".into()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{device}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    for prior in ["0", "0.3"] {
        let gpu = run("gpu", prior);
        assert!(gpu.trim().len() > "The cat".len());
        assert_eq!(gpu, run("cpu", prior), "prior penalty {prior}");
    }
}

#[test]
fn bad_requests_are_errors_not_panics() {
    let model = Model::load(&fixture("bert")).unwrap();
    let e = GpuEncoder::new(gpu(), &model.encoder).unwrap();
    assert!(e.logits_at_blocking(&[], &[]).is_err());
    assert!(e.logits_at_blocking(&[1, 2], &[2]).is_err());
    assert!(e.logits_at_blocking(&[u32::MAX], &[0]).is_err());
    assert!(e.logits_at_blocking(&vec![1; 10_000], &[0]).is_err());
}
