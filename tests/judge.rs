//! The judge on a tiny random Llama written as GGUF by the test (no download): its byte-level
//! BPE from the file's vocabulary and merges, its perplexity against a direct computation,
//! and the CLI around it.

use std::path::Path;

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use unmask::judge::{distinct_n, word_entropy, Judge};

/// Byte-level BPE vocabulary: the 256 byte symbols, then a few merges.
fn vocab() -> (Vec<String>, Vec<String>) {
    let bytes = tokenizers::pre_tokenizers::byte_level::ByteLevel::alphabet();
    let mut tokens: Vec<String> = bytes.iter().map(|c| c.to_string()).collect();
    tokens.sort();
    tokens.insert(0, "<|endoftext|>".into());
    let merges = ["t h", "th e", "Ġ c", "Ġc a", "Ġca t", "a t"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    (tokens, merges.iter().map(|s| s.to_string()).collect())
}

fn write_tiny_llama(path: &Path, dtype: GgmlDType) {
    let (tokens, merges) = vocab();
    let (v, h, ffn, layers, heads, kv_heads) = (tokens.len(), 64usize, 128usize, 2usize, 4usize, 2usize);
    let dev = Device::Cpu;
    let mut seed = 1u64;
    let mut rand = |shape: (usize, usize), scale: f32| {
        let n = shape.0 * shape.1;
        let data: Vec<f32> = (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 33) as f32 / (1u64 << 31) as f32 - 0.5) * 2.0 * scale
            })
            .collect();
        Tensor::from_vec(data, shape, &dev).unwrap()
    };
    let q = |t: Tensor, dt: GgmlDType| QTensor::quantize(&t, dt).unwrap();
    let ones = |n: usize| QTensor::quantize(&Tensor::ones(n, candle_core::DType::F32, &dev).unwrap(), GgmlDType::F32).unwrap();
    let head_dim = h / heads;
    let mut tensors: Vec<(String, QTensor)> = vec![
        ("token_embd.weight".into(), q(rand((v, h), 0.1), dtype)),
        ("output_norm.weight".into(), ones(h)),
    ];
    for l in 0..layers {
        let p = format!("blk.{l}");
        tensors.push((format!("{p}.attn_q.weight"), q(rand((h, h), 0.2), dtype)));
        tensors.push((format!("{p}.attn_k.weight"), q(rand((kv_heads * head_dim, h), 0.2), dtype)));
        tensors.push((format!("{p}.attn_v.weight"), q(rand((kv_heads * head_dim, h), 0.2), dtype)));
        tensors.push((format!("{p}.attn_output.weight"), q(rand((h, h), 0.2), dtype)));
        tensors.push((format!("{p}.ffn_gate.weight"), q(rand((ffn, h), 0.2), dtype)));
        tensors.push((format!("{p}.ffn_up.weight"), q(rand((ffn, h), 0.2), dtype)));
        tensors.push((format!("{p}.ffn_down.weight"), q(rand((h, ffn), 0.2), dtype)));
        tensors.push((format!("{p}.attn_norm.weight"), ones(h)));
        tensors.push((format!("{p}.ffn_norm.weight"), ones(h)));
    }
    use gguf_file::Value;
    let strings = |v: Vec<String>| Value::Array(v.into_iter().map(Value::String).collect());
    let md: Vec<(&str, Value)> = vec![
        ("general.architecture", Value::String("llama".into())),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.embedding_length", Value::U32(h as u32)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("llama.context_length", Value::U32(256)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.merges", strings(merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (*k, v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}

#[test]
fn perplexity_matches_a_direct_computation() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [GgmlDType::F32, GgmlDType::Q4_1] {
        let path = dir.path().join(format!("tiny-{dtype:?}.gguf"));
        write_tiny_llama(&path, dtype);
        let mut j = Judge::load(&path).unwrap();
        // The tokenizer applies the file's merges: "the" and " cat" are single tokens.
        let (tokens, _) = vocab();
        let ids = j.encode("the cat sat").unwrap();
        let pieces: Vec<&str> = ids.iter().map(|&i| tokens[i as usize].as_str()).collect();
        assert_eq!(pieces, ["the", "Ġcat", "Ġ", "s", "at"], "{dtype:?}");
        let (cached, n) = j.nll_ids(&ids).unwrap();
        let (direct, m) = j.nll_ids_uncached(&ids).unwrap();
        assert_eq!((n, m), (ids.len(), ids.len()), "BOS + tokens: every token is scored");
        assert!((cached - direct).abs() < 1e-3 * direct.abs().max(1.0), "{dtype:?}: KV cache {cached} vs direct {direct}");
        // A random model is close to uniform over the vocabulary, and not exactly it.
        let ppl = j.perplexity(&["the cat sat".to_string()]).unwrap();
        assert!((ppl - (cached / n as f64).exp()).abs() < 1e-6);
        let uniform = tokens.len() as f64;
        // Sequences of different lengths scored together equal each scored alone.
        let batch: Vec<Vec<u32>> = ["the cat sat", "sat", "the the cat cat sat at"].iter().map(|t| j.encode(t).unwrap()).collect();
        let together = j.nll_batch(&batch).unwrap();
        for (ids, (s, k)) in batch.iter().zip(&together) {
            let (alone, m) = j.nll_ids_uncached(ids).unwrap();
            assert_eq!(*k, m);
            assert!((s - alone).abs() < 1e-3 * alone.abs().max(1.0), "{dtype:?}: batched {s} vs alone {alone}");
        }
        assert!(ppl > uniform / 4.0 && ppl < uniform * 4.0 && (ppl - uniform).abs() > 1e-3, "{dtype:?}: perplexity {ppl}");
    }
}

#[test]
fn sample_statistics() {
    let texts = vec!["a b a b".to_string(), "c d".to_string()];
    // Words a, b, c, d with counts 2, 2, 1, 1 of 6.
    let p = [2.0 / 6.0, 2.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0];
    let want: f64 = p.iter().map(|p: &f64| -p * p.log2()).sum();
    assert!((word_entropy(&texts) - want).abs() < 1e-12);
    // Bigrams: (a b), (b a), (a b), (c d): 3 distinct of 4.
    assert!((distinct_n(&texts, 2) - 0.75).abs() < 1e-12);
}

#[test]
fn cli_judges_samples_and_reference() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_llama(&model, GgmlDType::Q4_1);
    let (s, r) = (dir.path().join("s.txt"), dir.path().join("r.txt"));
    std::fs::write(&s, "the cat sat\nthe cat the cat\n").unwrap();
    std::fs::write(&r, "a cat sat on the mat\n").unwrap();
    let bin = env!("CARGO_BIN_EXE_unmask");
    let o = std::process::Command::new(bin)
        .args(["judge", "--judge", model.to_str().unwrap(), "--samples", s.to_str().unwrap(), "--reference", r.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.lines().next().unwrap().starts_with("samples ") && out.contains("reference") && out.contains("word entropy"), "{out}");
    // A model file that is not a judge: a clear error naming it.
    let o = std::process::Command::new(bin)
        .args(["judge", "--judge", "models/default.gguf", "--samples", s.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("judge models/default.gguf") && err.contains("llama"), "{err}");
}

#[test]
fn cli_judges_a_sampler_of_its_own_against_the_prompts_real_text() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny.gguf");
    write_tiny_llama(&model, GgmlDType::F32);
    let corpus = dir.path().join("c.txt");
    std::fs::write(&corpus, "The cat sat on the mat all day.\n\nA dog ran in the park at noon.\n\nA third one.\n").unwrap();
    let eval = |sampler: &str| {
        let args = ["eval", "-m", "models/default.gguf", "--corpus", corpus.to_str().unwrap(), "--judge", model.to_str().unwrap()];
        std::process::Command::new(env!("CARGO_BIN_EXE_unmask"))
            .args(args)
            .args(["--sampler", sampler, "--prompts", "2", "--seeds", "2"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap()
    };
    let o = eval(r#"{"strategy":"margin","steps":4}"#);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let row = out.lines().find(|l| l.starts_with("--sampler")).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(r#""strategy":"margin""#), "{row}");
    assert!(out.contains("real text (first 2 documents, lower-cased)"), "{out}");
    // 2 prompts × 2 seeds: the first prompt's two seeds, then the second prompt's.
    let shown: Vec<&str> = out.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(shown.len(), 4, "{out}");
    assert!(shown[0].trim().starts_with("the cat sat") && shown[2].trim().starts_with("a dog ran"), "{out}");
    // A bad option names itself and what would be valid.
    let o = eval(r#"{"strategy":"best"}"#);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("strategy") && err.contains("margin"), "{err}");
}
