#!/usr/bin/env python3
"""Route (b)'s tokenizer: a byte-level BPE with RoBERTa's special tokens, trained on the train
split only (the same construction as the engine's `unmask train --from-scratch`, src/model/bpe.rs).

    python training/train_bpe.py --vocab 16384 --out training/runs/bpe16k   # -> tokenizer.json

Prints tokens per word on the validation split for this tokenizer and, for comparison, for the
shipped model's (per-token perplexities of the two routes compare only through this ratio:
per-word perplexity = per-token perplexity ** (tokens / words)).
"""
import argparse
import os

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def documents(path):
    with open(path, encoding="utf-8") as f:
        for doc in f.read().split("\n\n"):
            if doc.strip():
                yield doc


def tokens_per_word(tok, path):
    tokens = words = 0
    for doc in documents(path):
        tokens += len(tok.encode(doc, add_special_tokens=False).ids)
        words += len(doc.split())
    return tokens / words


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--out", default=os.path.join(HERE, "runs", "bpe16k"))
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    ap.add_argument("--shipped", default=None, help="a tokenizer.json to compare with (e.g. the shipped model's)")
    a = ap.parse_args()
    if not 300 <= a.vocab <= 65536:
        ap.error("--vocab must be in [300, 65536]")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    trainer = trainers.BpeTrainer(vocab_size=a.vocab, min_frequency=2, show_progress=False,
                                  special_tokens=[AddedToken(s, special=True) for s in SPECIALS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents(os.path.join(a.data, "train.txt")), trainer)
    os.makedirs(a.out, exist_ok=True)
    tok.save(os.path.join(a.out, "tokenizer.json"))
    valid = os.path.join(a.data, "valid.txt")
    print(f"byte-level BPE, {tok.get_vocab_size()} pieces: {tokens_per_word(tok, valid):.3f} tokens per word on the validation split")
    if a.shipped:
        other = Tokenizer.from_file(a.shipped)
        other.no_truncation()  # saved tokenizers may cut at the model's context
        other.no_padding()
        print(f"{a.shipped}: {tokens_per_word(other, valid):.3f} tokens per word")


if __name__ == "__main__":
    main()
