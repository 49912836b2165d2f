"""The packed corpus (pack.py): the same training sequences and held-out text as the text it was
packed from, refused when the run would cut or tokenize differently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_export.distill import run
from model_export.distill.__main__ import main
from model_export.distill.pack import main as pack_main
from tests.model_export.distill.conftest import CORPUS, quiet, small_config


def test_a_packed_corpus_is_the_text_it_was_packed_from(tmp_path: Path, bert_teacher: Path) -> None:
    packed = tmp_path / "corpus.npz"
    assert pack_main([str(bert_teacher), str(CORPUS), "--out", str(packed), "--heldout-percent", "15"]) == 0
    from_text = run.prepare(small_config(tmp_path / "a", bert_teacher), quiet)
    from_packed = run.prepare(small_config(tmp_path / "b", bert_teacher, corpus=(str(packed),)), quiet)
    assert len(from_packed.corpus.train) == len(from_text.corpus.train)
    assert all(np.array_equal(a, b) for a, b in zip(from_packed.corpus.train, from_text.corpus.train, strict=True))
    assert from_packed.corpus.heldout == from_text.corpus.heldout
    assert np.array_equal(from_packed.eval_set.labels, from_text.eval_set.labels)
    assert packed.stat().st_size < sum(p.stat().st_size for p in CORPUS.rglob("*.txt"))


@pytest.mark.parametrize(("option", "words"), [(["--max-length", "64"], "packed with --max-length 128, this run has --max-length 64"),
                                               (["--heldout-percent", "5"], "packed with --heldout-percent 15.0")])
def test_a_packed_corpus_cut_differently_is_refused(tmp_path: Path, bert_teacher: Path, capsys: pytest.CaptureFixture[str],
                                                    option: list[str], words: str) -> None:
    packed = tmp_path / "corpus.npz"
    assert pack_main([str(bert_teacher), str(CORPUS), "--out", str(packed), "--heldout-percent", "15"]) == 0
    capsys.readouterr()
    args = [str(bert_teacher), str(packed), "--out", str(tmp_path / "out"), "--heldout-percent", "15", *option]
    assert main(args) == 1
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.run").exists()
