#!/usr/bin/env python3
"""Route (b) of the default model, the CPU recipe search: a small cased pre-LN RoBERTa
(`roberta-prelayernorm`, which the engine loads) trained from scratch on our byte-level BPE,
watching whether it leaves the unigram plateau (`shared/notes/pretraining.md`: 14 tiny runs of
160–2,400 steps never did).

    python training/scratch.py --minutes 120 --threads 1 --out training/runs/scratch-cpu
    python training/scratch.py --hidden 512 --layers 8 --heads 8 --seq 256 --batch 128 \
        --bf16 --compile --minutes 8 --out /tmp/scratch-gpu                      # a lent GPU

Levers this run combines, each chosen because the plateau note names it as untested:
- **aligned windows** (consecutive chunks of `seq − 2` tokens; session 2 found random offsets
  hide position information and stall a tiny model);
- a **mask-rate curriculum**: t ~ U(0.05, t_max) with t_max rising linearly from
  `--t-start` to 1 over `--curriculum` steps, so that early on every masked token has most of its
  neighbours visible and the context path pays off at once;
- dropout 0, pre-LayerNorm, many small steps.

Besides the held-out ELBO perplexity (the same quantity as `finetune.py`), it logs the **masked
CE at t = 0.15** next to the **unigram CE** of the validation tokens: a model that uses context
sits clearly below the unigram line; one on the plateau sits on it. Resumable like finetune.py.
"""
import argparse
import json
import lzma
import math
import os
import shutil
import sys
import time

import numpy as np

import torch
from tokenizers import Tokenizer
from transformers import RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM

from finetune import mask_batch, token_stream, train_step, windows

HERE = os.path.dirname(os.path.abspath(__file__))


def probe(model, stream, seq, ids, t, n=32, seed=0xC0DE):
    """Mean masked CE (nats) over n aligned validation windows at mask rate t."""
    cls_id, sep_id, mask_id = ids
    gen = torch.Generator().manual_seed(seed)
    body = seq - 2
    starts = torch.arange(n) * body
    x = windows(stream, starts, seq, cls_id, sep_id)
    model.eval()
    with torch.no_grad():
        inp, m, _, _ = mask_batch(x, mask_id, gen, t=t, max_prefix=0)
        dev = next(model.parameters()).device
        logits = model(input_ids=inp.to(dev)).logits.float().cpu()
        ce = torch.nn.functional.cross_entropy(logits[m], x[m]).item()
    model.train()
    return ce


def elbo(model, stream, seq, ids, n=32):
    """exp of the 1/t-weighted masked CE per maskable token, t = 0.1 … 1.0 (as finetune.py)."""
    total = 0.0
    for k in range(1, 11):
        total += probe(model, stream, seq, ids, k / 10, n, seed=0xE7A1 + k)
    # probe returns CE per masked token; masked ≈ t × maskable, so CE/t·(masked/maskable) = CE.
    return math.exp(total / 10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "runs", "scratch-cpu"))
    ap.add_argument("--tokenizer", default=os.path.join(HERE, "runs", "bpe8k", "tokenizer.json"))
    ap.add_argument("--minutes", type=float, default=60)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--t-start", type=float, default=0.25, help="t_max at step 0 of the curriculum")
    ap.add_argument("--curriculum", type=int, default=4000, help="steps for t_max to reach 1 (0: none)")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--tokens", default="", help="pre-tokenized train/valid streams (.npz, optionally .xz) from --pretokenize")
    ap.add_argument("--pretokenize", default="", help="write the train/valid streams in --tokenizer to this .npz.xz and exit")
    ap.add_argument("--export", default="", help="at the end, also write the model (bf16) and tokenizer here (a device run's $OUT)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the training forward (GPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    tok = Tokenizer.from_file(args.tokenizer)
    tok.no_padding()
    tok.no_truncation()
    ids = tuple(tok.token_to_id(s) for s in ("<s>", "</s>", "<mask>"))
    cls_id, sep_id, mask_id = ids
    cache = os.path.join(args.out, "streams.pt")
    if args.pretokenize:
        streams = {n: token_stream(tok, os.path.join(HERE, "data", f"{n}.txt"), sep_id).numpy().astype(np.uint16) for n in ("train", "valid")}
        with lzma.open(args.pretokenize, "wb", preset=9) as f:
            np.savez(f, **streams)
        print(f"{args.pretokenize}: {len(streams['train'])} train / {len(streams['valid'])} valid tokens", file=sys.stderr)
        return
    os.makedirs(args.out, exist_ok=True)
    if args.tokens:
        with (lzma.open(args.tokens) if args.tokens.endswith(".xz") else open(args.tokens, "rb")) as f:
            z = np.load(f)
            train, valid = (torch.from_numpy(z[n].astype(np.int64)) for n in ("train", "valid"))
    elif os.path.exists(cache):
        train, valid = torch.load(cache)
    else:
        train = token_stream(tok, os.path.join(HERE, "data", "train.txt"), sep_id)
        valid = token_stream(tok, os.path.join(HERE, "data", "valid.txt"), sep_id)
        torch.save((train, valid), cache)
    counts = torch.bincount(valid, minlength=tok.get_vocab_size()).double()
    p = counts / counts.sum()
    unigram_ce = -(p[p > 0] * p[p > 0].log()).sum().item()

    ckpt = os.path.join(args.out, "model")
    resume = os.path.exists(os.path.join(args.out, "trainer.pt"))
    if resume:
        model = RobertaPreLayerNormForMaskedLM.from_pretrained(ckpt)
    else:
        cfg = RobertaPreLayerNormConfig(
            vocab_size=tok.get_vocab_size(), hidden_size=args.hidden, num_hidden_layers=args.layers,
            num_attention_heads=args.heads, intermediate_size=4 * args.hidden,
            max_position_embeddings=args.seq + 2, type_vocab_size=1, pad_token_id=tok.token_to_id("<pad>"),
            bos_token_id=cls_id, eos_token_id=sep_id, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
            tie_word_embeddings=True)
        model = RobertaPreLayerNormForMaskedLM(cfg)
    model.to(device).train()
    fwd = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    step = 0
    if resume:
        st = torch.load(os.path.join(args.out, "trainer.pt"))
        opt.load_state_dict(st["optimizer"])
        step = st["step"]
    print(f"{sum(q.numel() for q in model.parameters())} parameters, {len(train)} train / {len(valid)} valid "
          f"tokens, unigram CE {unigram_ce:.3f} nats, from step {step}", file=sys.stderr, flush=True)

    gen = torch.Generator().manual_seed(7 + step)
    body = args.seq - 2
    chunks = len(train) // body
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    log = open(os.path.join(args.out, "log.jsonl"), "a")
    while time.time() < deadline:
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / args.warmup)
        t_max = 1.0 if not args.curriculum else min(1.0, args.t_start + (1 - args.t_start) * step / args.curriculum)
        starts = torch.randint(0, chunks, (args.batch,), generator=gen) * body
        x = windows(train, starts, args.seq, cls_id, sep_id).to(device)
        t = 0.05 + (t_max - 0.05) * torch.rand(args.batch, generator=gen)
        inp, m, _, _ = mask_batch(x.cpu(), mask_id, gen, t=None if t_max >= 1 else t)
        inp, m = inp.to(device), m.to(device)
        loss, fwd = train_step(model, fwd, opt, inp, x, m, device, args.bf16)
        step += 1
        if step % args.eval_every == 0:
            rec = {"step": step, "loss": round(loss.item(), 4), "t_max": round(t_max, 3),
                   "ce_t015": round(probe(model, valid, args.seq, ids, 0.15), 4), "unigram_ce": round(unigram_ce, 4),
                   "elbo_ppl": round(elbo(model, valid, args.seq, ids), 1), "minutes": round((time.time() - t0) / 60, 1)}
            print(rec, file=sys.stderr, flush=True)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            model.save_pretrained(ckpt)
            tok.save(os.path.join(ckpt, "tokenizer.json"))
            torch.save({"optimizer": opt.state_dict(), "step": step}, os.path.join(args.out, "trainer.pt"))
    if args.export:
        # The weights as they are at the end (bf16: half the bytes), with the tokenizer and
        # the log, for `unmask convert`; the run's own checkpoints stay in --out.
        shutil.rmtree(args.export, ignore_errors=True)
        model.to(torch.bfloat16).save_pretrained(args.export, safe_serialization=True, max_shard_size="15MB")
        tok.save(os.path.join(args.export, "tokenizer.json"))
        shutil.copy(os.path.join(args.out, "log.jsonl"), args.export)


if __name__ == "__main__":
    main()
