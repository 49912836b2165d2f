"""The corpus recipe's pure parts: the R lazy-load reader (on bytes built here), the held-out split,
the prose filter. Downloading the Debian packages is not part of the test suite."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

from model_export.default_model import corpus
from model_export.default_model.rlazyload import read_lazyload_db


def _int(value: int) -> bytes:
    return struct.pack(">i", value)


def _char(text: str) -> bytes:
    data = text.encode()
    return _int(0x00040009) + _int(len(data)) + data


def _strsxp(values: list[str]) -> bytes:
    return _int(16) + _int(len(values)) + b"".join(_char(v) for v in values)


def _named_list(items: list[tuple[str, bytes]]) -> bytes:
    names = _int(0x402) + _int(1) + _char("names") + _strsxp([name for name, _ in items]) + _int(254)
    return _int(0x213) + _int(len(items)) + b"".join(value for _, value in items) + names


def _serialized(body: bytes) -> bytes:
    return b"X\n" + _int(3) + _int(0x040201) + _int(0x030500) + _int(5) + b"UTF-8" + body


def test_lazyload_reader_returns_character_vectors(tmp_path: Path) -> None:
    books = {"emma": ["EMMA", "", "CHAPTER I", "Emma Woodhouse, handsome, clever, and rich"], "persuasion": ["Persuasion"]}
    blob, index = b"", []
    for name, lines in books.items():
        payload = _serialized(_strsxp(lines))
        chunk = struct.pack(">I", len(payload)) + zlib.compress(payload)
        index.append((name, _int(13) + _int(2) + _int(len(blob)) + _int(len(chunk))))
        blob += chunk
    rdx = _named_list([("variables", _named_list(index)), ("references", _named_list([])), ("compressed", _int(10) + _int(1) + _int(1))])
    (tmp_path / "Rdata.rdx").write_bytes(gzip.compress(_serialized(rdx)))
    (tmp_path / "Rdata.rdb").write_bytes(blob)
    assert read_lazyload_db(tmp_path / "Rdata.rdx") == books


def test_heldout_split_is_by_document_and_stable() -> None:
    ids = [f"austen/emma/{chapter}" for chapter in range(2000)]
    held = [doc for doc in ids if corpus.is_heldout(doc)]
    assert held == [doc for doc in ids if corpus.is_heldout(doc)]
    assert 0.015 < len(held) / len(ids) < 0.045


def test_prose_filter() -> None:
    assert corpus.is_prose("It is a truth universally acknowledged, that a single man in possession of a good fortune.")
    assert not corpus.is_prose(">>> x = [1, 2, 3]; print(x[0] + 42)")
    assert not corpus.is_prose("Too short.")
