#!/usr/bin/env python3
"""Turns a shipped GGUF (e.g. models/default.gguf) back into a Hugging Face folder, so the next
training run starts from the released model without the bf16 checkpoint (35 MB, not committed).

    pip install gguf        # PyPI; reads and dequantizes GGUF
    python training/gguf_to_hf.py models/default.gguf START_DIR [--bf16]
    python training/finetune.py --init START_DIR ...

q8_0 weights come back within their quantization error (relative RMS of the logits ~1e-2 vs
the f32 checkpoint, `training/ship.sh`); a few hundred steps of training absorb it. Our GGUF
files keep the Hugging Face tensor names and carry config.json and tokenizer.json as metadata.
"""
import argparse
import json
import os

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.torch import save_file


def text_field(reader, key):
    f = reader.fields[key]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--bf16", action="store_true", help="write bf16 (half the size, for a device run's carry)")
    args = ap.parse_args()
    r = GGUFReader(args.gguf)
    cfg = json.loads(text_field(r, "unmask.config"))
    tokenizer = text_field(r, "tokenizer.huggingface.json")
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    tensors = {}
    for t in r.tensors:
        # GGUF lists dimensions innermost first; numpy/torch want them outermost first.
        shape = tuple(int(d) for d in reversed(t.shape))
        values = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        tensors[t.name] = torch.from_numpy(values).to(dtype).contiguous()
    if cfg.get("tie_word_embeddings", True):
        tensors.pop("cls.predictions.decoder.weight", None)
    cfg.setdefault("tie_word_embeddings", True)
    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "tokenizer.json"), "w", encoding="utf-8") as f:
        f.write(tokenizer)
    print(f"{args.out}: {len(tensors)} tensors, vocab {cfg['vocab_size']}, {'bf16' if args.bf16 else 'f32'}")


if __name__ == "__main__":
    main()
