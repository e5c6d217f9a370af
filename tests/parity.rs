//! Our encoder against Hugging Face `transformers` (fixtures from tests/fixtures/make_fixtures.py).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, FAMILIES};
use unmask::Model;

fn expected(family: &str) -> (Tensor, Tensor) {
    let m = candle_core::safetensors::load(fixture(family).join("expected.safetensors"), &Device::Cpu).unwrap();
    let ids = m["input_ids"].to_dtype(DType::U32).unwrap();
    (ids, m["logits"].clone())
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn logits_match_transformers_for_every_family() {
    for family in FAMILIES {
        let mut model = Model::load(&fixture(family)).unwrap_or_else(|e| panic!("{family}: {e}"));
        let (ids, want) = expected(family);
        // Inference with candle's matmul and with our SIMD128 GEMM (the wasm default; here
        // its portable lanes), and the differentiable training path.
        for (train, own) in [(false, false), (false, true), (true, false)] {
            model.encoder.kernels.own_gemm = own;
            let got = if train { model.encoder.forward_train(&ids) } else { model.encoder.forward(&ids) }.unwrap();
            let d = max_abs_diff(&got, &want);
            println!("{family} train={train} own-gemm={own}: max |Δlogit| = {d:.2e}");
            assert!(d <= 1e-4, "{family} (train {train}, own gemm {own}): max |Δlogit| {d} > 1e-4");
        }
    }
}

/// `logits_at` runs the last layer for the selected rows only: the same logits as the full
/// forward, for both layouts (post- and pre-LN), both kernels, in any order, with repeats.
#[test]
fn logits_at_selected_positions_equal_the_full_forward() {
    for family in FAMILIES {
        let mut model = Model::load(&fixture(family)).unwrap();
        let (ids, want) = expected(family);
        let row: Vec<u32> = ids.get(2).unwrap().to_vec1().unwrap();
        let positions = [row.len() - 1, 0, 3, 4, 3];
        let vocab = model.config().vocab_size;
        for own in [false, true] {
            model.encoder.kernels.own_gemm = own;
            let got = model.logits_at(&row, &positions).unwrap();
            assert_eq!(got.len(), positions.len() * vocab);
            for (k, &p) in positions.iter().enumerate() {
                let w: Vec<f32> = want.get(2).unwrap().get(p).unwrap().to_vec1().unwrap();
                for v in 0..vocab {
                    assert!((got[k * vocab + v] - w[v]).abs() <= 1e-4, "{family} own {own}: position {p}");
                }
            }
            assert!(model.logits_at(&row, &[]).unwrap().is_empty(), "{family}: no positions, no logits");
        }
    }
}

#[test]
fn sharded_checkpoints_load_like_single_files() {
    let src = fixture("roberta");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let all = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = all.keys().collect();
    names.sort();
    let (a, b) = names.split_at(names.len() / 2);
    let mut weight_map = serde_json::Map::new();
    for (file, part) in [("model-00001-of-00002.safetensors", a), ("model-00002-of-00002.safetensors", b)] {
        let shard: std::collections::HashMap<String, Tensor> = part.iter().map(|n| ((*n).clone(), all[*n].clone())).collect();
        candle_core::safetensors::save(&shard, dir.path().join(file)).unwrap();
        for n in part {
            weight_map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let sharded = Model::load(dir.path()).unwrap();
    let single = Model::load(&src).unwrap();
    let (ids, _) = expected("roberta");
    let d = max_abs_diff(&sharded.encoder.forward(&ids).unwrap(), &single.encoder.forward(&ids).unwrap());
    assert_eq!(d, 0.0);
    // A shard name that escapes the folder is refused.
    let evil = serde_json::json!({ "weight_map": { "x": "../x.safetensors" } });
    std::fs::write(dir.path().join("model.safetensors.index.json"), evil.to_string()).unwrap();
    let e = Model::load(dir.path()).err().expect("escaping shard accepted").to_string();
    assert!(e.contains("leaves the model folder"), "{e}");
}
