//! The `unmask` command line: generation with visible steps, conversion, info, and clear
//! errors (non-zero exit, no panic) for bad input.

mod common;

use std::process::{Command, Output};

use common::fixture;

fn unmask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_unmask")).args(args).output().unwrap()
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn fx(f: &str) -> String {
    fixture(f).to_string_lossy().into_owned()
}

#[test]
fn generate_shows_every_step() {
    let o = unmask(&["generate", "-m", &fx("roberta-prelayernorm"), "-p", "The cat", "-n", "12", "--steps", "6", "--show-steps"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("step")).collect();
    assert_eq!(lines.len(), 7, "{out}"); // step 0 (all masks) + 6 steps
    let masks: Vec<usize> = lines.iter().map(|l| l.matches("[MASK]").count()).collect();
    assert_eq!(masks[0], 12);
    assert!(masks.windows(2).all(|w| w[1] < w[0]), "{masks:?}");
    assert_eq!(*masks.last().unwrap(), 0);
    assert!(lines.iter().all(|l| l.contains("The cat")));
}

#[test]
fn convert_info_and_generate_from_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    let o = unmask(&["convert", &fx("bert"), "-o", out.to_str().unwrap(), "--dtype", "q8_0"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = unmask(&["info", out.to_str().unwrap()]);
    let (s, _) = text(&o);
    assert!(o.status.success());
    assert!(s.contains("model_type      bert") && s.contains("q8_0"), "{s}");
    let o = unmask(&["generate", "-m", out.to_str().unwrap(), "--infill", "The [MASK:2] sat on the [MASK].", "--steps", "3", "--strategy", "confidence"]);
    let (s, e) = text(&o);
    assert!(o.status.success(), "{e}");
    assert!(s.contains("sat on the") && !s.contains("[MASK]"), "{s}");
}

/// A GGUF input is re-encoded: the q8_0 file's values as f32 compute the same logits (both run
/// in f32 natively), and the new file says f32.
#[test]
fn convert_re_encodes_a_gguf_file() {
    let dir = tempfile::tempdir().unwrap();
    let (q8, f32) = (dir.path().join("q8.gguf"), dir.path().join("q8-values.gguf"));
    assert!(unmask(&["convert", &fx("roberta"), "-o", q8.to_str().unwrap(), "--dtype", "q8_0"]).status.success());
    let o = unmask(&["convert", q8.to_str().unwrap(), "-o", f32.to_str().unwrap(), "--dtype", "f32"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let (a, b) = (unmask::Model::load(&q8).unwrap(), unmask::Model::load(&f32).unwrap());
    assert_eq!(b.info().dtype, "f32");
    let ids: Vec<u32> = (0..12u32).map(|i| (i * 29 + 5) % 300).collect();
    let pos: Vec<usize> = (0..12).collect();
    assert_eq!(a.logits_at(&ids, &pos).unwrap(), b.logits_at(&ids, &pos).unwrap());
}

#[test]
fn same_seed_same_output() {
    let args = ["generate", "-m", &fx("roberta"), "-p", "A boat", "-n", "12", "--seed", "42"];
    let a = unmask(&args);
    let b = unmask(&args);
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

/// Every bad input: a non-zero exit, a message containing `want`, and no panic.
#[test]
fn bad_input_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let no_tok = dir.path().join("no_tokenizer");
    std::fs::create_dir(&no_tok).unwrap();
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture("roberta").join(f), no_tok.join(f)).unwrap();
    }
    let truncated = dir.path().join("t.gguf");
    let not_a_model = format!("{}/config.json", fx("bert"));
    let full = dir.path().join("f.gguf");
    assert!(unmask(&["convert", &fx("roberta"), "-o", full.to_str().unwrap()]).status.success());
    let bytes = std::fs::read(&full).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let wrong_type = dir.path().join("wrong_type");
    std::fs::create_dir(&wrong_type).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture("roberta").join(f), wrong_type.join(f)).unwrap();
    }
    let cfg = std::fs::read_to_string(fixture("roberta").join("config.json")).unwrap();
    std::fs::write(wrong_type.join("config.json"), cfg.replace("\"roberta\"", "\"gpt2\"")).unwrap();
    let wrong_tok = dir.path().join("wrong_tok");
    std::fs::create_dir(&wrong_tok).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(fixture("bert").join(f), wrong_tok.join(f)).unwrap();
    }
    std::fs::copy(fixture("roberta").join("tokenizer.json"), wrong_tok.join("tokenizer.json")).unwrap();

    let m = fx("roberta");
    let long = "word ".repeat(200);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["generate", "-m", &m, "-p", ""], "prompt is empty"),
        (vec!["generate", "-m", &m, "-p", "hi", "-n", "0"], "length"),
        (vec!["generate", "-m", &m, "-p", "hi", "--steps", "0"], "steps"),
        (vec!["generate", "-m", &m, "-p", "hi", "--top-p", "0"], "top-p"),
        (vec!["generate", "-m", &m, "-p", "hi", "--top-p", "1.5"], "top-p"),
        (vec!["generate", "-m", &m, "-p", "hi", "--temperature", "0"], "temperature"),
        (vec!["generate", "-m", &m, "-p", "hi", "--temperature", "-1"], "temperature"),
        (vec!["generate", "-m", &m, "-p", "hi", "--strategy", "best"], "strategy (--strategy) must be one of random, confidence, threshold, margin, entropy, got \"best\""),
        (vec!["generate", "-m", &m, "-p", "hi", "--seed", "-3"], "seed (--seed) must be an integer in [0, 9007199254740991], got -3"),
        (vec!["generate", "-m", &m, "-p", &long], "context"),
        (vec!["generate", "-m", &m, "--infill", "no spans"], "no [MASK]"),
        (vec!["generate", "-m", &m, "--infill", "[MASK:0]"], "mask count"),
        (vec!["generate", "-m", no_tok.to_str().unwrap(), "-p", "hi"], "tokenizer.json"),
        (vec!["generate", "-m", truncated.to_str().unwrap(), "-p", "hi"], "truncated"),
        (vec!["generate", "-m", "/nonexistent/model.gguf", "-p", "hi"], "cannot read"),
        (vec!["info", wrong_type.to_str().unwrap()], "unsupported model_type `gpt2`"),
        (vec!["info", wrong_tok.to_str().unwrap()], "wrong tokenizer"),
        (vec!["convert", &m, "-o", "/tmp/x.gguf", "--dtype", "q3"], "unknown dtype"),
        (vec!["convert", &not_a_model, "-o", "/tmp/x.gguf"], "neither a Hugging Face model folder nor a .gguf file"),
        (vec!["convert", truncated.to_str().unwrap(), "-o", "/tmp/x.gguf"], "truncated"),
    ];
    for (args, want) in &cases {
        let o = unmask(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected `{want}` in: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    println!("{} bad inputs rejected cleanly", cases.len());
}

#[test]
fn missing_or_misshapen_tensors_are_named() {
    use candle_core::{Device, Tensor};
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = candle_core::safetensors::load(fixture("roberta").join("model.safetensors"), &Device::Cpu).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(fixture("roberta").join(f), dir.path().join(f)).unwrap();
    }
    let victim = "roberta.encoder.layer.1.attention.self.key.weight";
    let saved = tensors.remove(victim).unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let o = unmask(&["info", dir.path().to_str().unwrap()]);
    let (_, e) = text(&o);
    assert!(!o.status.success() && e.contains(victim) && e.contains("missing"), "{e}");
    tensors.insert(victim.into(), Tensor::zeros((64, 32), saved.dtype(), &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let o = unmask(&["info", dir.path().to_str().unwrap()]);
    let (_, e) = text(&o);
    assert!(!o.status.success() && e.contains(victim) && e.contains("shape"), "{e}");
}

#[test]
fn device_option_errors_are_clear() {
    let m = fx("bert");
    let o = unmask(&["generate", "-m", &m, "-p", "The cat", "-n", "4", "--device", "tpu"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("unknown device `tpu`"), "{}", text(&o).1);
    // This test binary is built without the webgpu feature (cargo test's default features).
    if !cfg!(feature = "webgpu") {
        let o = unmask(&["generate", "-m", &m, "-p", "The cat", "-n", "4", "--device", "gpu"]);
        assert!(!o.status.success());
        assert!(text(&o).1.contains("--features webgpu"), "{}", text(&o).1);
    }
}
