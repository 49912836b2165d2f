"""The head-training corpus: English text unpacked from Debian packages, deterministically.

Recipe (`python -m model_export.default_model corpus`):
1. `apt-get download` each package in PACKAGES into .corpus/debs and `dpkg -x` it into .corpus/root
   (no root install; the Debian mirrors are the only network this needs).
2. Each source yields documents (a novel's chapter, a run of dictionary entries, a fortune file's
   run of fortunes, a documentation file); text is reflowed into paragraphs and kept only when it
   reads as prose (enough words, mostly letters).
3. A document is held out when sha256(document id) falls in the lowest HELDOUT_PERCENT percent:
   the split is by document, independent of file order, and stable when sources are added.
4. Paragraphs are shuffled with a fixed seed; each source is subsampled by SOURCE_WEIGHTS so the
   40 MB dictionary does not drown the novels.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import random
import re
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGES = (
    "r-cran-janeaustenr", "dict-gcide", "wordnet-base", "fortunes-min", "fortunes", "jargon-text",
    "dict-foldoc", "dict-devil", "python3.11-doc", "debian-reference-en",
)
HELDOUT_PERCENT = 3
SEED = 20261124
# Fraction of each source's training paragraphs kept (deterministic subsample).
SOURCE_WEIGHTS = {
    "austen": 1.0, "gcide": 0.15, "wordnet": 0.5, "fortunes": 1.0, "jargon": 1.0,
    "foldoc": 0.5, "devil": 1.0, "python-docs": 0.4, "debian-reference": 1.0,
}
DEFAULT_CORPUS_DIR = Path(".corpus")


@dataclass(frozen=True)
class Document:
    id: str
    source: str
    paragraphs: tuple[str, ...]


def fetch(corpus_dir: Path = DEFAULT_CORPUS_DIR, log: Callable[[str], None] = print) -> Path:
    """Download and unpack PACKAGES (skipping what is already there); returns the unpack root."""
    debs, root = corpus_dir / "debs", corpus_dir / "root"
    debs.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        marker = root / f".{package}.unpacked"
        if marker.exists():
            continue
        if not list(debs.glob(f"{package}_*.deb")):
            log(f"[corpus] apt-get download {package}")
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True, capture_output=True)
        (deb,) = sorted(debs.glob(f"{package}_*.deb"))[-1:]
        subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
        marker.touch()
    return root


_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")


def is_prose(paragraph: str, min_words: int = 6) -> bool:
    words = _WORD.findall(paragraph)
    if len(words) < min_words:
        return False
    letters = sum(ch.isalpha() or ch == " " for ch in paragraph)
    return letters / len(paragraph) >= 0.8


def _reflow(block: str) -> str:
    return " ".join(block.split())


def _paragraphs(text: str) -> list[str]:
    return [_reflow(block) for block in re.split(r"\n\s*\n", text) if block.strip()]


def _grouped(source: str, name: str, paragraphs: list[str], size: int) -> Iterator[Document]:
    for start in range(0, len(paragraphs), size):
        yield Document(f"{source}/{name}/{start // size}", source, tuple(paragraphs[start : start + size]))


def austen(root: Path) -> Iterator[Document]:
    from model_export.default_model.rlazyload import read_lazyload_db

    books = read_lazyload_db(root / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx")
    for name, lines in sorted(books.items()):
        chapter, buffer = 0, []
        for line in [*(line or "" for line in lines), "CHAPTER END"]:
            if re.match(r"^\s*(CHAPTER|Chapter)\s+\w+", line):
                if buffer:
                    yield Document(f"austen/{name}/{chapter}", "austen", tuple(_paragraphs("\n".join(buffer))))
                chapter, buffer = chapter + 1, []
            else:
                buffer.append(line)


_GCIDE_NOISE = re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|PJC|WordNet 1\.5|[A-Z][a-z]*\.)[^\]]*\]|\{|\}|\\[^\\\s]*\\")


def dictd(root: Path, name: str, source: str, group: int = 100) -> Iterator[Document]:
    text = gzip.open(root / f"usr/share/dictd/{name}.dict.dz", "rt", encoding="utf-8", errors="replace").read()
    text = _GCIDE_NOISE.sub("", text)
    yield from _grouped(source, name, _paragraphs(text), group)


def wordnet(root: Path) -> Iterator[Document]:
    for part in ("adj", "adv", "noun", "verb"):
        glosses = []
        for line in (root / f"usr/share/wordnet/data.{part}").read_text(errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:
                continue
            gloss = line.split("|", 1)[1].strip()
            glosses.append(gloss[:1].upper() + gloss[1:] + ("" if gloss.endswith((".", '"')) else "."))
        yield from _grouped("wordnet", part, glosses, 200)


def fortunes(root: Path) -> Iterator[Document]:
    directory = root / "usr/share/games/fortunes"
    for path in sorted(directory.iterdir()):
        if path.suffix or not path.is_file():
            continue
        entries = [_reflow(entry) for entry in re.split(r"^%\s*$", path.read_text(errors="replace"), flags=re.M)]
        yield from _grouped("fortunes", path.name, [e for e in entries if e], 50)


def jargon(root: Path) -> Iterator[Document]:
    text = gzip.open(root / "usr/share/doc/jargon-text/jargon.txt.gz", "rt", errors="replace").read()
    text = re.sub(r"[{}]", "", text.replace("‘", "'").replace("’", "'"))
    yield from _grouped("jargon", "jargon", _paragraphs(text), 50)


def python_docs(root: Path) -> Iterator[Document]:
    base = root / "usr/share/doc/python3.11/html/_sources"
    for path in sorted(base.rglob("*.rst.txt")):
        text = re.sub(r":[a-z:]+:`~?([^`<]*?)(?:\s*<[^>]*>)?`", r"\1", path.read_text(errors="replace"))
        text = text.replace("``", "").replace("**", "").replace("*", "")
        paragraphs = [p for p in _paragraphs(text) if not p.startswith(("..", ">>>", "::"))]
        if paragraphs:
            yield Document(f"python-docs/{path.relative_to(base)}", "python-docs", tuple(paragraphs))


def debian_reference(root: Path) -> Iterator[Document]:
    for path in sorted((root / "usr/share/debian-reference").glob("*.en.html")):
        text = path.read_text(errors="replace")
        text = re.sub(r"(?s)<(script|style|pre)\b.*?</\1>", "\n\n", text)
        text = re.sub(r"</?(p|div|li|h\d|tr|table|dt|dd)\b[^>]*>", "\n\n", text)
        text = html.unescape(re.sub(r"<[^>]+>", "", text))
        yield from _grouped("debian-reference", path.name, _paragraphs(text), 50)


def documents(root: Path) -> Iterator[Document]:
    yield from austen(root)
    yield from dictd(root, "gcide", "gcide", 200)
    yield from wordnet(root)
    yield from fortunes(root)
    yield from jargon(root)
    yield from dictd(root, "foldoc", "foldoc")
    yield from dictd(root, "devil", "devil", 50)
    yield from python_docs(root)
    yield from debian_reference(root)


def is_heldout(document_id: str) -> bool:
    return int(hashlib.sha256(document_id.encode()).hexdigest(), 16) % 100 < HELDOUT_PERCENT


@dataclass(frozen=True)
class Split:
    train: list[tuple[str, str]]  # (source, paragraph), shuffled
    heldout: list[tuple[str, str]]


def split(root: Path) -> Split:
    """Prose paragraphs, split by document, subsampled per SOURCE_WEIGHTS and shuffled with SEED."""
    rng = random.Random(SEED)
    train, heldout = [], []
    for document in documents(root):
        target = heldout if is_heldout(document.id) else train
        for paragraph in document.paragraphs:
            if is_prose(paragraph) and rng.random() < SOURCE_WEIGHTS[document.source]:
                target.append((document.source, paragraph))
    random.Random(SEED).shuffle(train)
    random.Random(SEED + 1).shuffle(heldout)
    return Split(train, heldout)
