//! The bad-input catalogue (`catalogue.json`, shared with the JS test) against the Rust API and
//! the CLI: every case must fail with its kind of error and a message naming the problem,
//! never a panic, and the fixture model must still work after each.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Value};
use unmask::diffusion::request::{from_json, GenerateRequest, TrainRequest};
use unmask::model::gguf::WeightDtype;
use unmask::diffusion::corpus::split_documents;
use unmask::diffusion::{TrainOptions, Trainer};
use unmask::model::adapters::Adapters;
use unmask::Model;

const HF: &str = "roberta-prelayernorm";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn catalogue() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/bad_inputs/catalogue.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

/// Strings in the catalogue stand for bytes one to one (Latin-1), so they can hold any byte.
fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| u8::try_from(c as u32).expect("catalogue bytes are Latin-1")).collect()
}

fn fixture_gguf() -> Vec<u8> {
    let m = Model::load(&fixture(HF)).unwrap();
    let mut c = std::io::Cursor::new(Vec::new());
    m.write_gguf(&mut c, WeightDtype::Q8_0).unwrap();
    c.into_inner()
}

/// Applies a GGUF case's change to the fixture's bytes (mirrored in the JS test).
fn patch_gguf(base: &[u8], op: &Value) -> Vec<u8> {
    let mut b = base.to_vec();
    match op["op"].as_str().unwrap() {
        "empty" => b.clear(),
        "truncate" => b.truncate(op["keep"].as_u64().unwrap() as usize),
        "truncateFraction" => {
            let k = op["keep"].as_f64().unwrap();
            let n = if k < 0.0 { b.len() - 1 } else { (b.len() as f64 * k) as usize };
            b.truncate(n);
        }
        "patch" => {
            let at = op["at"].as_u64().unwrap() as usize;
            let bytes = latin1(op["bytes"].as_str().unwrap());
            b[at..at + bytes.len()].copy_from_slice(&bytes);
        }
        "text" => b = op["text"].as_str().unwrap().as_bytes().to_vec(),
        "hfFile" => b = std::fs::read(fixture(HF).join(op["file"].as_str().unwrap())).unwrap(),
        "tensorDim" => {
            // GGUF tensor info: name (u64 length + bytes), u32 n_dims, u64 dims[..].
            let name = op["tensor"].as_str().unwrap().as_bytes();
            let mut needle = (name.len() as u64).to_le_bytes().to_vec();
            needle.extend_from_slice(name);
            let at = b.windows(needle.len()).position(|w| w == needle.as_slice()).expect("tensor in header");
            let dim = at + needle.len() + 4;
            b[dim..dim + 8].copy_from_slice(&op["value"].as_u64().unwrap().to_le_bytes());
        }
        other => panic!("unknown gguf op {other}"),
    }
    b
}

/// A changed copy of the Hugging Face fixture folder.
fn patch_hf(spec: &Value, dir: &Path) {
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture(HF).join(f), dir.join(f)).unwrap();
    }
    if let Some(f) = spec["remove"].as_str() {
        std::fs::remove_file(dir.join(f)).unwrap();
    }
    if let Some(Value::Object(w)) = spec.get("write") {
        for (f, text) in w {
            std::fs::write(dir.join(f), latin1(text.as_str().unwrap())).unwrap();
        }
    }
    if let Some(Value::Object(changes)) = spec.get("config") {
        let mut cfg: Map<String, Value> = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        cfg.extend(changes.clone());
        std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    }
    if let Some(from) = spec["tokenizerFrom"].as_str() {
        std::fs::copy(fixture(from).join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    }
    if let Some(Value::Object(t)) = spec.get("truncate") {
        for (f, keep) in t {
            let b = std::fs::read(dir.join(f)).unwrap();
            std::fs::write(dir.join(f), &b[..keep.as_u64().unwrap() as usize]).unwrap();
        }
    }
}

fn wants(case: &Value, layer: &str) -> bool {
    case.get("only").map_or(true, |o| o.as_array().unwrap().iter().any(|l| l == layer))
}

fn check_message(case: &Value, layer: &str, msg: &str) -> Result<(), String> {
    let msg_l = msg.to_lowercase();
    let ok = case["message"].as_array().unwrap().iter().any(|m| msg_l.contains(&m.as_str().unwrap().to_lowercase()));
    if ok {
        Ok(())
    } else {
        Err(format!("[{layer}] {}: message `{msg}` names none of {}", case["name"], case["message"]))
    }
}

fn check_error(case: &Value, res: unmask::Result<()>) -> Result<(), String> {
    match res {
        Ok(()) => Err(format!("[rust] {}: accepted", case["name"])),
        Err(e) => {
            if e.kind() != case["error"].as_str().unwrap() {
                return Err(format!("[rust] {}: {} `{e}`, want {}", case["name"], e.kind(), case["error"]));
            }
            check_message(case, "rust", &e.to_string())
        }
    }
}

/// The Rust API: the case's input through the same entry points the CLI and wasm use.
fn rust_case(case: &Value, model: &Model, gguf: &[u8]) -> Option<unmask::Result<()>> {
    if let Some(op) = case.get("gguf") {
        return Some(Model::from_gguf_bytes(&patch_gguf(gguf, op)).map(|_| ()));
    }
    if let Some(spec) = case.get("hf") {
        let dir = tempfile::tempdir().unwrap();
        patch_hf(spec, dir.path());
        return Some(Model::load(dir.path()).map(|_| ()));
    }
    if let Some(req) = case.get("request") {
        let json = serde_json::to_vec(req).unwrap();
        return Some(from_json::<GenerateRequest>(&json, "generation request").and_then(|r| {
            let mut s = r.into_session(model)?;
            while s.step(model)?.is_some() {}
            Ok(())
        }));
    }
    if let Some(t) = case.get("train") {
        let json = serde_json::to_vec(&t["request"]).unwrap();
        return Some(from_json::<TrainRequest>(&json, "training request").and_then(|r| {
            r.into_trainer(model, t["corpus"].as_str().unwrap())?.step().map(|_| ())
        }));
    }
    if let Some(a) = case.get("adapters") {
        return Some(match a["op"].as_str().unwrap() {
            "modelFile" => Adapters::from_gguf(gguf).map(|_| ()),
            // Fine-tuned on the f32 checkpoint, merged into its q8_0 conversion.
            "wrongBase" => (|| {
                let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/www/sample-corpus.txt")).unwrap();
                let opts = TrainOptions { seq_len: 16, batch_size: 2, ..Default::default() };
                let mut t = Trainer::new(model, &split_documents(&corpus), opts)?;
                t.step()?;
                let adapters = t.adapters()?.expect("a LoRA fine-tune has adapters");
                Adapters::from_gguf(&adapters.to_gguf()?)?.merge_into(&Model::from_gguf_bytes(gguf)?).map(|_| ())
            })(),
            op => panic!("unknown adapters op {op}"),
        });
    }
    None
}

/// The same input as `unmask` arguments, where the CLI has a way to say it.
fn cli_args(case: &Value, gguf: &[u8], tmp: &Path) -> Option<Vec<String>> {
    let model = fixture(HF).to_string_lossy().to_string();
    if let Some(op) = case.get("gguf") {
        let f = tmp.join("bad.gguf");
        std::fs::write(&f, patch_gguf(gguf, op)).unwrap();
        return Some(vec!["info".into(), f.to_string_lossy().into()]);
    }
    if let Some(spec) = case.get("hf") {
        let dir = tmp.join("hf");
        std::fs::create_dir_all(&dir).unwrap();
        patch_hf(spec, &dir);
        return Some(vec!["info".into(), dir.to_string_lossy().into()]);
    }
    let flag = |k: &str| -> Option<&'static str> {
        Some(match k {
            "steps" => "--steps",
            "strategy" => "--strategy",
            "threshold" => "--threshold",
            "schedule" => "--schedule",
            "blockLength" => "--block-length",
            "temperature" => "--temperature",
            "topK" => "--top-k",
            "topP" => "--top-p",
            "repetitionPenalty" => "--repetition-penalty",
            "seed" => "--seed",
            "lr" => "--lr",
            "batchSize" => "--batch-size",
            "seqLen" => "--seq-len",
            "vocab" => "--vocab",
            _ => return None,
        })
    };
    let mut args: Vec<String> = Vec::new();
    let push_options = |args: &mut Vec<String>, o: Option<&Value>| -> Option<()> {
        for (k, v) in o.and_then(|o| o.as_object()).into_iter().flatten() {
            args.push(flag(k)?.into());
            args.push(v.as_str().map(String::from).unwrap_or_else(|| v.to_string()));
        }
        Some(())
    };
    if let Some(r) = case.get("request") {
        let r = r.as_object().unwrap();
        args.extend(["generate".into(), "-m".into(), model]);
        for (k, v) in r {
            match k.as_str() {
                "prompt" => args.extend(["-p".into(), v.as_str()?.into()]),
                "template" => args.extend(["--infill".into(), v.as_str()?.into()]),
                "length" => args.extend(["-n".into(), v.to_string()]),
                "options" => push_options(&mut args, Some(v))?,
                _ => return None,
            }
        }
        return Some(args);
    }
    if let Some(t) = case.get("train") {
        let r = t["request"].as_object().unwrap();
        let corpus = tmp.join("corpus.txt");
        std::fs::write(&corpus, t["corpus"].as_str().unwrap()).unwrap();
        args.extend(["train", "--corpus"].map(String::from));
        args.push(corpus.to_string_lossy().into());
        args.extend(["--steps".into(), "1".into(), "--out".into(), tmp.join("run").to_string_lossy().into()]);
        match r["mode"].as_str()? {
            "finetune" => args.extend(["--init".into(), model]),
            "scratch" => {
                args.extend(["--from-scratch".into(), r.get("size").and_then(|s| s.as_str()).unwrap_or("tiny").into()])
            }
            _ => return None,
        }
        push_options(&mut args, r.get("options"))?;
        return Some(args);
    }
    None
}

#[test]
fn every_bad_input_fails_cleanly() {
    let model = Model::load(&fixture(HF)).unwrap();
    let gguf = fixture_gguf();
    let (mut failures, mut rust_n, mut cli_n) = (Vec::new(), 0, 0);
    for case in catalogue() {
        if wants(&case, "rust") {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| rust_case(&case, &model, &gguf)));
            match res {
                Ok(Some(r)) => {
                    rust_n += 1;
                    if let Err(f) = check_error(&case, r) {
                        failures.push(f);
                    }
                }
                Ok(None) => failures.push(format!("{}: no Rust input in the case", case["name"])),
                Err(_) => failures.push(format!("[rust] {}: PANICKED", case["name"])),
            }
            // The model is unchanged and still generates after every rejected input.
            let ok = from_json::<GenerateRequest>(br#"{"prompt":"The cat","length":4,"options":{"steps":2}}"#, "r")
                .and_then(|r| r.into_session(&model))
                .and_then(|mut s| s.step(&model));
            assert!(matches!(ok, Ok(Some(_))), "model unusable after {}", case["name"]);
        }
        if wants(&case, "cli") {
            let tmp = tempfile::tempdir().unwrap();
            if let Some(args) = cli_args(&case, &gguf, tmp.path()) {
                cli_n += 1;
                let o = Command::new(env!("CARGO_BIN_EXE_unmask")).args(&args).output().unwrap();
                let err = String::from_utf8_lossy(&o.stderr);
                if o.status.code() != Some(1) || err.contains("panicked") {
                    failures.push(format!("[cli] {}: exit {:?}, stderr {err}", case["name"], o.status.code()));
                } else if let Err(f) = check_message(&case, "cli", &err) {
                    failures.push(f);
                }
            }
        }
    }
    println!("bad inputs rejected cleanly: {rust_n} through the Rust API, {cli_n} through the CLI");
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
    assert!(rust_n >= 60 && cli_n >= 40, "catalogue shrank: {rust_n} Rust, {cli_n} CLI cases");
}
