#!/usr/bin/env bash
# Converts a training run into the shipped default model and measures it:
#   training/ship.sh [run-dir]        (default training/runs/minilm)
# Writes models/default.gguf (q8_0: 18.4 MB with the 16,384-piece vocabulary; q4_k is kept in
# target/models for comparison)
# and prints quantization error against transformers,
# held-out ELBO perplexity, unigram entropy per sampler, and the first five samples.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-training/runs/minilm16k-gpu}
PY=${PYTHON:-python3}
cargo build --release --quiet
U=target/release/unmask
mkdir -p target/models
$U convert "$RUN" -o models/default.gguf --dtype q8_0 --name unmask-minilm-diffusion
$U convert "$RUN" -o target/models/default-q4k.gguf --dtype q4_k --name unmask-minilm-diffusion
$U info models/default.gguf
$PY training/reference_logits.py "$RUN" target/models/reference.safetensors
cargo run --release --quiet --example compare -- target/models/reference.safetensors "$RUN" models/default.gguf target/models/default-q4k.gguf
$U eval -m models/default.gguf --corpus training/data/valid.txt --seq-len 128 --sequences 32
for seed in 0 1 2 3 4; do
  echo "random, 10 steps, seed $seed:      $($U generate -m models/default.gguf -p 'the old house' -n 32 --steps 10 --seed $seed)"
done
for seed in 0 1 2 3 4; do
  echo "confidence, 32 steps, seed $seed:  $($U generate -m models/default.gguf -p 'the old house' -n 32 --steps 32 --strategy confidence --seed $seed)"
done
