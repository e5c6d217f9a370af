"""Models for the ONNX Runtime Web comparison (bench/browser.mjs), each as the same weights in
both formats: ONNX fp32 + int8 (onnxruntime's quantize_dynamic) for ORT-web, and GGUF f32 +
q8_0 (`unmask convert`) for Unmask.

    python bench/export_onnx.py            # -> bench/models/<name>/{model.onnx, model.int8.onnx, f32.gguf, q8_0.gguf}

Models: `default` (the shipped model, turned back into a Hugging Face folder from its GGUF, when
present), `rpln-512x8` (random roberta-prelayernorm 512 × 8, FFN 2048, vocab 8,192: the
yardstick of shared/notes/benchmarking.md) and, with --bert-base, a random bert-base.
Needs torch, transformers, tokenizers, onnx, onnxruntime, gguf (PyPI); not run by CI.
"""
import argparse, os, shutil, subprocess, sys

import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from tokenizers import ByteLevelBPETokenizer
from transformers import (AutoModelForMaskedLM, BertConfig, BertForMaskedLM,
                          RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def bpe_tokenizer(out_dir, vocab):
    tok = ByteLevelBPETokenizer()
    text = open(os.path.join(ROOT, "www", "sample-corpus.txt")).read()
    tok.train_from_iterator([text], vocab_size=min(vocab, 2000),
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.save(os.path.join(out_dir, "tokenizer.json"))


def random_model(name, kind):
    d = os.path.join(HERE, "models", name, "hf")
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(0)
    if kind == "rpln":
        cfg = RobertaPreLayerNormConfig(vocab_size=8192, hidden_size=512, num_hidden_layers=8, num_attention_heads=8,
                                        intermediate_size=2048, max_position_embeddings=514, pad_token_id=1,
                                        bos_token_id=0, eos_token_id=2, type_vocab_size=1)
        model = RobertaPreLayerNormForMaskedLM(cfg)
        bpe_tokenizer(d, cfg.vocab_size)
    else:
        cfg = BertConfig(vocab_size=30522, pad_token_id=0)
        model = BertForMaskedLM(cfg)
        shutil.copy(os.path.join(ROOT, "tests", "fixtures", "bert", "tokenizer.json"), d)
    model.save_pretrained(d)
    return d


def export(name, hf):
    out = os.path.join(HERE, "models", name)
    os.makedirs(out, exist_ok=True)
    unmask = os.path.join(ROOT, "target", "release", "unmask")
    for dt in ["f32", "q8_0"]:
        subprocess.run([unmask, "convert", hf, "-o", os.path.join(out, f"{dt}.gguf"), "--dtype", dt], check=True)
    model = AutoModelForMaskedLM.from_pretrained(hf, attn_implementation="eager").eval()
    ids = torch.randint(5, 200, (1, 64))
    fp32 = os.path.join(out, "model.onnx")
    # The legacy exporter: dynamic sequence length, opset 17 (what transformers.js models use).
    torch.onnx.export(model, (ids, torch.ones_like(ids)), fp32, input_names=["input_ids", "attention_mask"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input_ids": {1: "seq"}, "attention_mask": {1: "seq"}, "logits": {1: "seq"}})
    quantize_dynamic(fp32, os.path.join(out, "model.int8.onnx"), weight_type=QuantType.QInt8)
    print(f"{name}: " + ", ".join(f"{f} {os.path.getsize(os.path.join(out, f)) / 1e6:.1f} MB" for f in sorted(os.listdir(out)) if "." in f))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bert-base", action="store_true")
    a = ap.parse_args()
    # The shipped model, back from its GGUF (`training/gguf_to_hf.py`, needs `pip install gguf`):
    # the weights the demo runs, q8_0 values in f32.
    snap = os.path.join(HERE, "models", "default", "hf")
    subprocess.run([sys.executable, os.path.join(ROOT, "training", "gguf_to_hf.py"),
                    os.path.join(ROOT, "models", "default.gguf"), snap], check=True)
    export("default", snap)
    export("rpln-512x8", random_model("rpln-512x8", "rpln"))
    if a.bert_base:
        export("bert-base", random_model("bert-base", "bert"))


if __name__ == "__main__":
    sys.exit(main())
