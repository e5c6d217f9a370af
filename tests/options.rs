//! The one definition of every option: specs, defaults, checks and CLI flags agree.

use serde_json::{json, Value};
use unmask::diffusion::{SampleOptions, Schedule, Strategy, TrainOptions};
use unmask::options::{OptionSet, Spec};

fn spec<'a>(specs: &'a [Spec], name: &str) -> &'a Spec {
    specs.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no spec {name}"))
}

#[test]
fn spec_names_are_the_serialised_fields_and_defaults_are_default() {
    fn check<T: OptionSet>() {
        let v = serde_json::to_value(T::default()).unwrap();
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        let specs = T::specs();
        let mut names: Vec<&String> = specs.iter().map(|s| &s.name).collect();
        let mut f = fields.clone();
        names.sort();
        f.sort();
        assert_eq!(names, f);
        for s in &specs {
            // The default passes its own check, and reading it back gives the default.
            s.check(&s.default).unwrap_or_else(|e| panic!("{}: default {} fails: {e}", s.name, s.default));
        }
        let defaults: serde_json::Map<String, Value> =
            specs.iter().filter(|s| !s.default.is_null()).map(|s| (s.name.clone(), s.default.clone())).collect();
        let back = T::from_value(Value::Object(defaults), "defaults").unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), v);
    }
    check::<SampleOptions>();
    check::<TrainOptions>();
}

#[test]
fn choice_words_round_trip_through_serde() {
    for w in Strategy::NAMES {
        let s: Strategy = serde_json::from_value(json!(w)).unwrap();
        assert_eq!(serde_json::to_value(s).unwrap(), json!(w));
        assert_eq!(w.parse::<Strategy>().unwrap(), s);
    }
    for w in Schedule::NAMES {
        let s: Schedule = serde_json::from_value(json!(w)).unwrap();
        assert_eq!(s.to_string(), *w);
    }
}

#[test]
fn bad_values_name_the_option_and_what_is_valid() {
    let cases = [
        (json!({"topP": 0}), "topP (--top-p) must be a number in (0, 1], got 0"),
        (json!({"steps": 1.5}), "steps (--steps) must be an integer in [1, 4096], got 1.5"),
        (json!({"steps": "10"}), "steps (--steps) must be an integer"),
        (json!({"seed": -1}), "seed (--seed) must be an integer in [0, 9007199254740991], got -1"),
        (json!({"strategy": "best"}), "must be one of random, confidence, threshold, margin, entropy, got \"best\""),
        (json!({"temperature": 0}), "temperature (--temperature) must be a number in (0, ∞)"),
        (json!({"tempreature": 1}), "unknown option `tempreature` in sampling options (valid: steps, strategy"),
        (json!([1]), "sampling options must be an object"),
    ];
    for (v, want) in cases {
        let e = SampleOptions::from_value(v.clone(), "sampling options").unwrap_err();
        assert!(matches!(e, unmask::Error::Options(_)), "{v}: {e}");
        assert!(e.to_string().contains(want), "{v}: `{e}` lacks `{want}`");
    }
    // Whole numbers written as floats (JS numbers) are integers.
    let o = SampleOptions::from_value(json!({"steps": 12.0, "blockLength": null, "topK": 0}), "o").unwrap();
    assert_eq!((o.steps, o.block_length, o.top_k), (12, None, 0));
    // Values set in Rust go through the same ranges.
    assert!(SampleOptions { top_p: 1.5, ..Default::default() }.check().is_err());
    assert!(SampleOptions { block_length: Some(0), ..Default::default() }.check().is_err());
    assert!(SampleOptions::default().check().is_ok());
}

#[test]
fn cli_flags_come_from_the_specs() {
    let specs = SampleOptions::specs();
    assert_eq!(spec(&specs, "repetitionPenalty").flag, "--repetition-penalty");
    assert_eq!(spec(&specs, "threshold").default, json!(0.9));
    assert_eq!(spec(&specs, "blockLength").default, Value::Null);
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_unmask")).args(["generate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for s in &specs {
        assert!(help.contains(&s.flag), "`unmask generate --help` lacks {}", s.flag);
    }
    assert!(help.contains("default: 0.95]"), "{help}");
}

#[test]
fn mode_defaults_in_the_help_are_the_constants() {
    use unmask::diffusion::finetune::Method;
    use unmask::diffusion::trainer::{FINETUNE_LR, LORA_LR, SCRATCH_LR};
    let specs = TrainOptions::specs();
    let help = &spec(&specs, "lr").help;
    for lr in [FINETUNE_LR, LORA_LR, SCRATCH_LR] {
        assert!(help.contains(&format!("{lr:e}")), "lr help `{help}` lacks {lr:e}");
    }
    let layers = &spec(&specs, "layers").help;
    assert!(layers.contains(&format!("top {}", unmask::diffusion::finetune::DEFAULT_LAYERS)), "layers help `{layers}`");
    let o = TrainOptions { steps: 1000, ..Default::default() };
    assert_eq!(o.clone().resolved(false).lr, Some(LORA_LR), "fine-tuning defaults to LoRA");
    assert_eq!(TrainOptions { method: Method::Top, ..o.clone() }.resolved(false).lr, Some(FINETUNE_LR));
    assert_eq!(TrainOptions { method: Method::Full, ..o.clone() }.resolved(false).lr, Some(FINETUNE_LR));
    assert_eq!(o.clone().resolved(true).lr, Some(SCRATCH_LR));
    assert_eq!(o.clone().resolved(true).method, Method::Full, "a model from scratch trains every weight");
    assert_eq!(o.resolved(true).warmup, Some(50), "5 % of steps");
    assert_eq!(TrainOptions { steps: 10, ..Default::default() }.resolved(true).warmup, Some(1));
    assert!(spec(&specs, "warmup").help.contains("5 % of steps, 1 to 200"));
    // Schedules read and write the same text.
    for s in ["continuous", "continuous:0.1", "steps:10"] {
        let o = TrainOptions::from_value(json!({ "schedule": s }), "t").unwrap();
        assert_eq!(serde_json::to_value(&o).unwrap()["schedule"], json!(s));
    }
    let e = TrainOptions::from_value(json!({ "schedule": "steps:0" }), "training options").unwrap_err();
    assert!(e.to_string().contains("steps:N needs N ≥ 1"), "{e}");
}

#[test]
fn specs_serialise_in_camel_case() {
    let v = serde_json::to_value(SampleOptions::specs()).unwrap();
    let top_p = v.as_array().unwrap().iter().find(|s| s["name"] == "topP").unwrap();
    assert_eq!(top_p["kind"], json!({"type": "real", "min": 0.0, "minOpen": true, "max": 1.0, "maxOpen": false}));
    assert_eq!(top_p["flag"], "--top-p");
}
