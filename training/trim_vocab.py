#!/usr/bin/env python3
"""Trims a WordPiece BERT checkpoint's vocabulary to the pieces our corpus uses.

    python training/trim_vocab.py IN_DIR OUT_DIR --size 16384 [--corpus training/data/train.txt]

MiniLM's 30,522-piece vocabulary makes the embedding (tied to the MLM decoder) half of the
model: 11.7M of 22.6M parameters, and the q8_0 file 24 MB. Our corpus uses 26.7k distinct
pieces, and the 16,384 most frequent cover 98.4 % of its tokens. Kept: the special tokens,
every single character and `##` character the corpus uses (so WordPiece can still spell any
word it could before, piece by piece), then the most frequent pieces. Ids keep their original
order ([PAD] stays 0). Rows of the embedding and of the decoder bias are gathered; the
tokenizer's vocabulary, added tokens, post-processor and padding ids are renumbered.
A word whose long piece was dropped is now split into shorter pieces; fine-tuning after the
trim (finetune.py --init OUT_DIR) teaches the model those spellings.
"""
import argparse
import collections
import json
import os
import shutil

import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer

from finetune import token_stream  # this folder: the same document split and encoding

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def piece_counts(tokenizer_path, corpus):
    """How often each piece occurs in the corpus as the trainer streams it (documents joined by
    [SEP], which is kept anyway as a special token)."""
    tok = Tokenizer.from_file(tokenizer_path)
    tok.no_truncation()
    tok.no_padding()
    return collections.Counter(token_stream(tok, corpus, tok.token_to_id("[SEP]")).tolist())


def choose(vocab, counts, size):
    """The ids to keep, in their original order."""
    by_id = {i: p for p, i in vocab.items()}
    keep = {vocab[s] for s in SPECIALS}
    for i, p in by_id.items():
        body = p[2:] if p.startswith("##") else p
        if len(body) == 1 and (counts[i] > 0 or body.isascii()):
            keep.add(i)
    if len(keep) > size:
        raise SystemExit(f"--size {size} is below the {len(keep)} special and single-character pieces")
    for i, _ in counts.most_common():
        if len(keep) >= size:
            break
        keep.add(i)
    return sorted(keep)


def remap_tokenizer(tj, vocab, kept):
    new_id = {old: new for new, old in enumerate(kept)}
    by_id = {i: p for p, i in vocab.items()}
    tj["model"]["vocab"] = {by_id[old]: new for new, old in enumerate(kept)}
    for t in tj.get("added_tokens", []):
        t["id"] = new_id[t["id"]]
    for spec in (tj.get("post_processor") or {}).get("special_tokens", {}).values():
        spec["ids"] = [new_id[i] for i in spec["ids"]]
    if tj.get("padding"):
        tj["padding"]["pad_id"] = new_id[tj["padding"]["pad_id"]]
    return tj


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--corpus", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "train.txt"))
    args = ap.parse_args()

    tj = json.load(open(os.path.join(args.src, "tokenizer.json")))
    vocab = tj["model"]["vocab"]
    counts = piece_counts(os.path.join(args.src, "tokenizer.json"), args.corpus)
    kept = choose(vocab, counts, args.size)
    covered = sum(counts[i] for i in kept) / max(1, sum(counts.values()))

    weights = load_file(os.path.join(args.src, "model.safetensors"))
    index = torch.tensor(kept)
    for name, w in list(weights.items()):
        if w.shape and w.shape[0] == len(vocab) and ("word_embeddings" in name or name.endswith("predictions.bias")
                                                     or name.endswith("decoder.bias") or name.endswith("decoder.weight")):
            weights[name] = w.index_select(0, index).contiguous()
    cfg = json.load(open(os.path.join(args.src, "config.json")))
    old_pad = cfg.get("pad_token_id", 0)
    cfg["vocab_size"] = len(kept)
    cfg["pad_token_id"] = kept.index(old_pad)

    os.makedirs(args.dst, exist_ok=True)
    save_file(weights, os.path.join(args.dst, "model.safetensors"), metadata={"format": "pt"})
    json.dump(cfg, open(os.path.join(args.dst, "config.json"), "w"), indent=2)
    json.dump(remap_tokenizer(tj, vocab, kept), open(os.path.join(args.dst, "tokenizer.json"), "w"), ensure_ascii=False)
    for extra in ("log.jsonl",):
        if os.path.exists(os.path.join(args.src, extra)):
            shutil.copy(os.path.join(args.src, extra), args.dst)
    print(f"vocabulary {len(vocab)} -> {len(kept)} pieces; kept pieces are {covered:.2%} of the corpus's tokens "
          f"before re-segmentation")


if __name__ == "__main__":
    main()
