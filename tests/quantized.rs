//! The GGUF format: round trips, error bounds of each weight type against f32, and refusal of
//! damaged files.
//!
//! Stated bounds (relative RMS error of all logits against the f32 model), on random weights:
//!   f32 ≤ 1e-6, f16 ≤ 2e-3, q8_0 ≤ 4e-2, q4_k ≤ 4e-1.
//! q8_0 matmuls also quantize the activations to 8 bits (as ggml does), hence a few percent.
//! With q4_k the tied embedding / output matrix stays q8_0 and matrices whose rows are not a
//! multiple of 256 use q4_0; random Gaussian weights (std 0.15) are the worst case for 4 bits:
//! measured 0.15 with q4_k proper and 0.24–0.32 with all-q4_0. Real checkpoints do far better
//! (see the README's figures for the default model).

mod common;

use std::io::Cursor;

use candle_core::{Device, Tensor};
use common::fixture;
use unmask::model::gguf::{self, WeightDtype};
use unmask::model::{init, ModelConfig, WeightStore};
use unmask::model::weights::Stored;
use unmask::Model;

fn to_gguf(model: &Model, dtype: WeightDtype) -> Vec<u8> {
    let mut c = Cursor::new(Vec::new());
    model.write_gguf(&mut c, dtype).unwrap();
    c.into_inner()
}

fn rel_rms(a: &Tensor, b: &Tensor) -> f32 {
    let d = (a - b).unwrap().sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    let n = b.sqr().unwrap().mean_all().unwrap().to_scalar::<f32>().unwrap();
    (d / n).sqrt()
}

fn probe_ids(vocab: u32) -> Tensor {
    let ids: Vec<u32> = (0..24u32).map(|i| (i * 37 + 5) % vocab).collect();
    Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap()
}

/// A model with hidden 256 so every matrix splits into q4_k's 256-wide blocks.
fn wide_model() -> Model {
    let tok = std::fs::read_to_string(fixture("roberta-prelayernorm").join("tokenizer.json")).unwrap();
    let mut cfg = ModelConfig::named("small", 320).unwrap();
    cfg.num_hidden_layers = 2;
    let mut store = WeightStore::default();
    for (n, t) in init::fresh_tensors(&cfg, 7, 0.05).unwrap() {
        store.insert(n, Stored::Dense(t));
    }
    Model::from_parts("wide", cfg, store, &tok).unwrap()
}

const BOUNDS: [(WeightDtype, f32); 4] =
    [(WeightDtype::F32, 1e-6), (WeightDtype::F16, 2e-3), (WeightDtype::Q8_0, 4e-2), (WeightDtype::Q4K, 4e-1)];

fn check_bounds(model: &Model, label: &str) {
    let ids = probe_ids(model.config().vocab_size as u32);
    let reference = model.encoder.forward(&ids).unwrap();
    for (dtype, bound) in BOUNDS {
        let bytes = to_gguf(model, dtype);
        let q = Model::from_gguf_bytes(&bytes).unwrap();
        assert_eq!(q.config(), model.config());
        let err = rel_rms(&q.encoder.forward(&ids).unwrap(), &reference);
        println!("{label} {dtype:?}: {} bytes, relative RMS logit error {err:.2e} (bound {bound:.1e})", bytes.len());
        assert!(err <= bound, "{label} {dtype:?}: error {err} over bound {bound}");
    }
}

#[test]
fn quantized_logits_stay_within_bounds_on_the_fixture() {
    check_bounds(&Model::load(&fixture("roberta-prelayernorm")).unwrap(), "fixture");
    check_bounds(&Model::load(&fixture("bert")).unwrap(), "bert fixture");
}

#[test]
fn q4k_is_really_used_and_bounded_when_rows_fit_its_blocks() {
    let model = wide_model();
    let q = Model::from_gguf_bytes(&to_gguf(&model, WeightDtype::Q4K)).unwrap();
    assert!(q.info().dtype.starts_with("q4k"), "dtype summary {}", q.info().dtype);
    check_bounds(&model, "wide");
}

#[test]
fn gguf_carries_tokenizer_and_name() {
    let model = Model::load(&fixture("roberta")).unwrap();
    let q = Model::from_gguf_bytes(&to_gguf(&model, WeightDtype::Q8_0)).unwrap();
    assert_eq!(q.name, "roberta");
    assert_eq!(q.codec.encode("The cat sat").unwrap(), model.codec.encode("The cat sat").unwrap());
    let smaller = to_gguf(&model, WeightDtype::Q8_0).len();
    assert!(smaller < to_gguf(&model, WeightDtype::F32).len());
}

fn load_err(bytes: &[u8]) -> String {
    match Model::from_gguf_bytes(bytes) {
        Ok(_) => panic!("damaged file loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn damaged_files_are_refused_with_a_clear_error() {
    let model = Model::load(&fixture("roberta")).unwrap();
    let good = to_gguf(&model, WeightDtype::Q8_0);
    // Truncated anywhere: in the tensor data, and inside the header.
    for cut in [good.len() - 1, good.len() * 3 / 4, good.len() / 2, 200, 40, 3, 0] {
        let e = load_err(&good[..cut]);
        assert!(!e.is_empty(), "cut {cut}");
    }
    assert!(load_err(&good[..good.len() - 100]).contains("truncated"));
    assert!(load_err(b"PK\x03\x04 not a gguf").contains("not a GGUF"));
    // Flipping bytes across the header must never panic.
    for i in (4..600).step_by(7) {
        let mut b = good.clone();
        b[i] ^= 0xA5;
        let _ = Model::from_gguf_bytes(&b);
    }
}

#[test]
fn vocab_mismatch_between_model_and_tokenizer_is_refused() {
    let model = Model::load(&fixture("roberta")).unwrap();
    let mut cfg = model.config().clone();
    cfg.vocab_size = 300;
    let mut tensors = gguf::sorted_dense(&model.store).unwrap();
    for (n, t) in tensors.iter_mut() {
        if n.contains("word_embeddings") || n == "lm_head.bias" {
            *t = t.narrow(0, 0, 300).unwrap();
        }
    }
    let mut c = Cursor::new(Vec::new());
    gguf::write(&mut c, "bad", &cfg, model.codec.json(), &tensors, WeightDtype::F32).unwrap();
    let e = load_err(&c.into_inner());
    assert!(e.contains("tokenizer has 320 tokens") && e.contains("300"), "{e}");
}

/// The integer kernel (on by default in the relaxed-SIMD wasm build; switched on here): 7-bit
/// weights and 8-bit activations add error on top of q8_0's, bounded at 1.2e-1 on the random
/// fixtures (measured 4.9e-2 to 7.2e-2; q8_0 through the f32 kernel 1.8e-2 to 2.8e-2), and on
/// the shipped model (measured 2.5e-2, all top-1 predictions the same).
#[test]
fn int8_kernel_keeps_q8_0_models_within_the_bound() {
    for family in ["bert", "roberta", "roberta-prelayernorm", "distilroberta"] {
        let Ok(model) = Model::load(&fixture(family)) else { panic!("fixture {family}") };
        let ids = probe_ids(model.config().vocab_size as u32);
        let reference = model.encoder.forward(&ids).unwrap();
        let mut q = Model::from_gguf_bytes(&to_gguf(&model, WeightDtype::Q8_0)).unwrap();
        q.encoder.kernels.int8 = false;
        let float = rel_rms(&q.encoder.forward(&ids).unwrap(), &reference);
        q.encoder.kernels.int8 = true;
        let int = rel_rms(&q.encoder.forward(&ids).unwrap(), &reference);
        println!("{family}: q8_0 relative RMS logit error {float:.2e} in f32, {int:.2e} with the int8 kernel");
        assert!(int <= 1.2e-1, "{family}: {int}");
        assert!(int > float * 0.5, "{family}: the int8 kernel was not used ({int} vs {float})");
    }
}

#[test]
fn int8_kernel_on_the_shipped_model_agrees_with_its_f32_path() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.gguf");
    let mut model = Model::load(&path).unwrap();
    let text = "the old house stood at the end of the lane, and nobody had lived in it for many years.";
    let mut ids = model.codec.encode(text).unwrap();
    let positions: Vec<usize> = (1..ids.len() - 1).step_by(3).collect();
    for &p in &positions {
        ids[p] = model.codec.mask_id;
    }
    model.encoder.kernels.int8 = false;
    let f = model.logits_at(&ids, &positions).unwrap();
    model.encoder.kernels.int8 = true;
    let q = model.logits_at(&ids, &positions).unwrap();
    let v = model.config().vocab_size;
    let argmax = |l: &[f32]| l.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
    let agree = (0..positions.len()).filter(|&r| argmax(&f[r * v..(r + 1) * v]) == argmax(&q[r * v..(r + 1) * v])).count();
    let err: f64 = f.iter().zip(&q).map(|(a, b)| ((a - b) as f64).powi(2)).sum::<f64>();
    let norm: f64 = f.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
    let rel = (err / norm).sqrt();
    println!("default model: int8 vs f32 relative RMS {rel:.2e}, top-1 agreement {agree}/{}", positions.len());
    assert!(rel < 3e-2, "relative RMS {rel}");
    assert!(agree * 10 >= positions.len() * 9, "top-1 agreement {agree}/{}", positions.len());
}
