//! Our encoder against Hugging Face `transformers` (fixtures from tests/fixtures/make_fixtures.py).

mod common;

use candle_core::{DType, Device, Tensor};
use common::{fixture, FAMILIES};
use unmask::backend::Mode;
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
        for mode in [Mode::Inference, Mode::Train] {
            model.encoder.mode = mode;
            let got = model.encoder.forward(&ids).unwrap();
            let d = max_abs_diff(&got, &want);
            println!("{family} {mode:?}: max |Δlogit| = {d:.2e}");
            assert!(d <= 1e-4, "{family} ({mode:?}): max |Δlogit| {d} > 1e-4");
        }
    }
}

#[test]
fn logits_at_selected_positions_equal_the_full_forward() {
    let model = Model::load(&fixture("roberta-prelayernorm")).unwrap();
    let (ids, want) = expected("roberta-prelayernorm");
    let row: Vec<u32> = ids.get(2).unwrap().to_vec1().unwrap();
    let positions = [0usize, 3, 4, row.len() - 1];
    let got = model.logits_at(&row, &positions).unwrap();
    let vocab = model.config().vocab_size;
    for (k, &p) in positions.iter().enumerate() {
        let w: Vec<f32> = want.get(2).unwrap().get(p).unwrap().to_vec1().unwrap();
        for v in 0..vocab {
            assert!((got[k * vocab + v] - w[v]).abs() <= 1e-4);
        }
    }
}
