#!/usr/bin/env bash
# Benchmark (issue: training): a `tiny` model trained from scratch for 60 s on the 5.4 KB
# sample corpus must memorise it (training loss < 1.0), and generations must reproduce its
# phrases. Prints the loss, and for prompts taken from the corpus the share of generated word
# 4-grams that occur in the corpus (chance level from an untrained model is printed next to it).
set -euo pipefail
cd "$(dirname "$0")/.."
CORPUS=www/sample-corpus.txt
OUT=${OUT:-target/bench/memorize}
SECONDS_BUDGET=${SECONDS_BUDGET:-60}
cargo build --release --quiet
U=target/release/unmask
rm -rf "$OUT" "$OUT-untrained"
echo "== train tiny from scratch for ${SECONDS_BUDGET} s ($(nproc) cores)"
$U train --corpus "$CORPUS" --from-scratch tiny --vocab 512 --lr 3e-3 --valid-fraction 0 \
  --minutes "$(python3 -c "print($SECONDS_BUDGET/60)")" --eval-every 0 --out "$OUT" 2>/dev/null | tail -1
$U train --corpus "$CORPUS" --from-scratch tiny --vocab 512 --valid-fraction 0 --steps 1 --lr 1e-9 --eval-every 0 \
  --out "$OUT-untrained" 2>/dev/null >/dev/null
python3 - "$U" "$CORPUS" "$OUT" <<'PY'
import subprocess, sys, re
u, corpus, out = sys.argv[1:]
text = open(corpus).read()
words = lambda s: re.findall(r"[\w'’]+", s.lower())
cw = words(text)
grams = {tuple(cw[i:i + 4]) for i in range(len(cw) - 3)}
paras = [p for p in text.split("\n\n") if p.strip()]
prompts = [" ".join(p.split()[:3]) for p in paras[:8]]
def score(model):
    hit = tot = 0
    samples = []
    for k, p in enumerate(prompts):
        r = subprocess.run([u, "generate", "-m", model, "-p", p, "-n", "32", "--steps", "10", "--seed", str(k)],
                           capture_output=True, text=True, check=True)
        s = r.stdout.strip().splitlines()[-1]
        samples.append(s)
        w = words(s)
        g = [tuple(w[i:i + 4]) for i in range(len(w) - 3)]
        hit += sum(x in grams for x in g)
        tot += len(g)
    return hit / max(tot, 1), samples
trained, samples = score(out)
untrained, _ = score(out + "-untrained")
print(f"word 4-grams of generations found in the corpus: trained {100 * trained:.1f} %, untrained {100 * untrained:.1f} %")
for s in samples[:3]:
    print("  sample:", s[:160])
PY
