"""Each loss term against a hand computation (plain Python floats on a toy batch), and the rows the
training step feeds them: soft targets and cosine at every non-padding token, masked LM at the
selected ones."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from model_export.distill.losses import LossTerms, LossWeights, cosine_loss, mlm_loss, soft_target_loss
from tests.model_export.distill.conftest import quiet, small_config

STUDENT = [[2.0, -1.0, 0.5, 0.0], [0.1, 0.2, 3.0, -2.0], [-1.0, -1.0, -1.0, 4.0]]
TEACHER = [[1.5, 0.0, 0.5, -0.5], [0.0, 0.0, 2.0, -1.0], [0.3, -0.2, 0.0, 2.5]]


def softmax(row: list[float], temperature: float) -> list[float]:
    exps = [math.exp(x / temperature) for x in row]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_soft_target_loss_is_kl_from_teacher_to_student_times_t_squared(temperature: float) -> None:
    expected = 0.0
    for s_row, t_row in zip(STUDENT, TEACHER, strict=True):
        p, q = softmax(t_row, temperature), softmax(s_row, temperature)
        expected += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q, strict=True))
    expected = expected / len(STUDENT) * temperature**2
    actual = soft_target_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), temperature)
    assert actual.item() == pytest.approx(expected, rel=1e-5)
    assert soft_target_loss(torch.tensor(TEACHER), torch.tensor(TEACHER), temperature).item() == pytest.approx(0.0, abs=1e-6)


def test_soft_target_gradient_is_student_minus_teacher_probabilities_times_t() -> None:
    """d/ds of T^2 KL(p_T || q_T) is T (q_T - p_T) / rows: the gradient the original trains with."""
    student = torch.tensor(STUDENT, requires_grad=True)
    soft_target_loss(student, torch.tensor(TEACHER), 2.0).backward()
    for row, (s_row, t_row) in enumerate(zip(STUDENT, TEACHER, strict=True)):
        q, p = softmax(s_row, 2.0), softmax(t_row, 2.0)
        expected = [2.0 * (qi - pi) / len(STUDENT) for qi, pi in zip(q, p, strict=True)]
        assert student.grad[row].tolist() == pytest.approx(expected, abs=1e-6)


def test_mlm_loss_is_the_mean_negative_log_likelihood_of_the_original_tokens() -> None:
    labels = [2, 0, 3]
    expected = -sum(math.log(softmax(row, 1.0)[label]) for row, label in zip(STUDENT, labels, strict=True)) / 3
    assert mlm_loss(torch.tensor(STUDENT), torch.tensor(labels)).item() == pytest.approx(expected, rel=1e-6)


def test_cosine_loss_is_the_mean_of_one_minus_cosine() -> None:
    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    expected = sum(1 - cosine(a, b) for a, b in zip(STUDENT, TEACHER, strict=True)) / 3
    assert cosine_loss(torch.tensor(STUDENT), torch.tensor(TEACHER)).item() == pytest.approx(expected, rel=1e-6)
    assert cosine_loss(torch.tensor(STUDENT), 3 * torch.tensor(STUDENT)).item() == pytest.approx(0.0, abs=1e-6)


def test_total_weighs_the_terms() -> None:
    terms = LossTerms(ce=torch.tensor(1.5), mlm=torch.tensor(4.0), cos=torch.tensor(0.25))
    assert terms.total(LossWeights(5.0, 2.0, 1.0)).item() == pytest.approx(5 * 1.5 + 2 * 4.0 + 0.25)
    assert LossTerms(ce=None, mlm=torch.tensor(4.0), cos=torch.tensor(0.25)).total(LossWeights(0.0, 2.0, 1.0)).item() == 8.25


@pytest.mark.parametrize("ce_positions", ["all", "masked"])
def test_the_training_step_feeds_each_loss_its_rows(tmp_path: Path, bert_teacher: Path, ce_positions: str) -> None:
    """Distiller.losses on a padded toy batch equals the terms computed from the full models' outputs."""
    from model_export.distill import run
    from model_export.distill.data import IGNORE

    config = small_config(tmp_path, bert_teacher, ce_positions=ce_positions, temperature=3.0)
    distiller = run.build_distiller(run.prepare(config, quiet), quiet)
    distiller.student.eval()  # no dropout, so the two computations see the same function
    ids = torch.tensor([[101, 1996, 103, 2003, 2417, 102], [101, 103, 4937, 102, 0, 0]])
    attention = (ids != 0).long()
    labels = torch.full_like(ids, IGNORE)
    labels[0, 2], labels[0, 4], labels[1, 1] = 3899, 2417, 1996
    terms = distiller.losses(ids, attention, labels)

    with torch.no_grad():
        student = distiller.student(input_ids=ids, attention_mask=attention, output_hidden_states=True)
        teacher = distiller.target(input_ids=ids, attention_mask=attention, output_hidden_states=True)
    keep, masked = attention.bool(), labels != IGNORE
    ce_rows = keep if ce_positions == "all" else masked
    expected_ce = soft_target_loss(student.logits[ce_rows], teacher.logits[ce_rows], 3.0)
    expected_mlm = mlm_loss(student.logits[masked], labels[masked])
    expected_cos = cosine_loss(student.hidden_states[-1][keep], teacher.hidden_states[-1][keep])
    assert terms.ce.item() == pytest.approx(expected_ce.item(), rel=1e-4)
    assert terms.mlm.item() == pytest.approx(expected_mlm.item(), rel=1e-5)
    assert terms.cos.item() == pytest.approx(expected_cos.item(), rel=1e-4, abs=1e-7)


def test_teacher_free_has_no_soft_targets_and_starts_at_zero_cosine(tmp_path: Path, bert_teacher: Path) -> None:
    from model_export.distill import run
    from model_export.distill.data import IGNORE

    config = small_config(tmp_path, bert_teacher, teacher_free=True)
    distiller = run.build_distiller(run.prepare(config, quiet), quiet)
    distiller.student.eval()
    ids = torch.tensor([[101, 1996, 103, 2003, 102]])
    labels = torch.full_like(ids, IGNORE)
    labels[0, 2] = 3899
    terms = distiller.losses(ids, torch.ones_like(ids), labels)
    assert terms.ce is None and terms.mlm is not None
    assert terms.cos.item() == pytest.approx(0.0, abs=1e-6)
    assert dataclasses.asdict(distiller.weights) == {"ce": 0.0, "mlm": 2.0, "cos": 1.0}
