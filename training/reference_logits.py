#!/usr/bin/env python3
"""Reference MLM logits of a Hugging Face checkpoint from `transformers`, for
`cargo run --example compare` (real-model parity and quantization error).

    python training/reference_logits.py training/runs/minilm /tmp/ref.safetensors
"""
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import AutoModelForMaskedLM

SENTENCES = [
    "the old house at the end of the street had been empty for [MASK] years.",
    "she opened the [MASK] and read the first page aloud to the children.",
    "the river runs through the [MASK] of the city before it reaches the sea.",
    "in the morning the streets were bright and quiet after the rain.",
]

model_dir, out = sys.argv[1], sys.argv[2]
tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
tok.no_padding()
tok.no_truncation()
rows = [tok.encode(s).ids for s in SENTENCES]
n = min(len(r) for r in rows)
ids = torch.tensor([r[:n - 1] + r[-1:] for r in rows], dtype=torch.long)
model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32).eval()  # bf16 exports too
with torch.no_grad():
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()
save_file({"input_ids": ids.contiguous(), "logits": logits.contiguous()}, out)
print(f"{tuple(ids.shape)} ids -> {out}")
