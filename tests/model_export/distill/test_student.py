"""The student starts as the DistilBERT paper says: the teacher's embeddings and head, and the chosen
teacher layers, copied weight for weight (BERT names mapped, token types folded in)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model_export.distill.student import choose_layers, freeze, init_student
from model_export.errors import InvalidOptionError, UnsupportedArchitectureError

BERT_TO_DISTILBERT = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def load(directory: Path):  # noqa: ANN201 - a transformers masked-LM
    import transformers

    return transformers.AutoModelForMaskedLM.from_pretrained(directory).eval()


@pytest.mark.parametrize(
    ("teacher_layers", "count", "which", "expected"),
    [(12, None, None, (0, 2, 4, 6, 8, 10)), (4, None, None, (0, 2)), (12, 3, None, (0, 4, 8)), (6, 6, None, tuple(range(6))),
     (1, None, None, (0,)), (12, None, (0, 2, 4, 7, 9, 11), (0, 2, 4, 7, 9, 11))],
)
def test_layers_are_one_out_of_two_by_default(teacher_layers: int, count: int | None, which, expected) -> None:
    assert choose_layers(teacher_layers, count, which) == expected


@pytest.mark.parametrize(("count", "which"), [(5, None), (None, (0, 4)), (None, (1, 1)), (None, ())])
def test_impossible_layer_choices_are_refused(count: int | None, which) -> None:
    with pytest.raises(InvalidOptionError):
        choose_layers(4, count, which)


def test_bert_student_copies_the_chosen_layers_exactly(bert_teacher: Path) -> None:
    teacher = load(bert_teacher)
    student = init_student(teacher, (1, 3))
    bert, ours = teacher.state_dict(), student.state_dict()
    assert student.config.n_layers == 2
    for index, source in enumerate((1, 3)):
        for bert_name, distil_name in BERT_TO_DISTILBERT.items():
            for kind in ("weight", "bias"):
                assert torch.equal(
                    ours[f"distilbert.transformer.layer.{index}.{distil_name}.{kind}"],
                    bert[f"bert.encoder.layer.{source}.{bert_name}.{kind}"],
                ), (index, distil_name, kind)
    assert torch.equal(ours["distilbert.embeddings.word_embeddings.weight"], bert["bert.embeddings.word_embeddings.weight"])
    folded = bert["bert.embeddings.position_embeddings.weight"] + bert["bert.embeddings.token_type_embeddings.weight"][0]
    assert torch.equal(ours["distilbert.embeddings.position_embeddings.weight"], folded)
    for kind in ("weight", "bias"):
        assert torch.equal(ours[f"distilbert.embeddings.LayerNorm.{kind}"], bert[f"bert.embeddings.LayerNorm.{kind}"])
        assert torch.equal(ours[f"vocab_transform.{kind}"], bert[f"cls.predictions.transform.dense.{kind}"])
        assert torch.equal(ours[f"vocab_layer_norm.{kind}"], bert[f"cls.predictions.transform.LayerNorm.{kind}"])
        assert torch.equal(ours[f"vocab_projector.{kind}"], bert[f"cls.predictions.decoder.{kind}"])
    assert student.vocab_projector.weight.data_ptr() == student.distilbert.embeddings.word_embeddings.weight.data_ptr()


@pytest.mark.parametrize("kind", ["bert", "distilbert"])
def test_a_student_with_every_layer_computes_what_the_teacher_does(kind: str, bert_teacher: Path, distilbert_teacher: Path) -> None:
    """The mapping as a whole, position folding and head included: same logits as the teacher."""
    teacher = load(bert_teacher if kind == "bert" else distilbert_teacher)
    student = init_student(teacher, (0, 1, 2, 3)).eval()
    ids = torch.tensor([[101, 7592, 2088, 103, 1012, 102], [101, 2023, 103, 102, 0, 0]])
    attention = (ids != 0).long()
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=attention).logits
        actual = student(input_ids=ids, attention_mask=attention).logits
    keep = attention.bool()
    assert (expected[keep] - actual[keep]).abs().max() < 1e-4


def test_a_distilbert_student_copies_its_layers(distilbert_teacher: Path) -> None:
    teacher = load(distilbert_teacher)
    student = init_student(teacher, (0, 2))
    theirs, ours = teacher.state_dict(), student.state_dict()
    for key, value in ours.items():
        source = key.replace("transformer.layer.1.", "transformer.layer.2.")
        assert torch.equal(value, theirs[source]), key


def test_a_bert_teacher_that_does_not_map_is_one_line(tmp_path: Path) -> None:
    import transformers

    config = transformers.BertConfig(vocab_size=64, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=16, hidden_act="relu")
    with pytest.raises(UnsupportedArchitectureError, match="hidden_act 'relu'"):
        init_student(transformers.BertForMaskedLM(config), (0,))


def test_freeze_stops_gradients_to_the_named_parts(bert_teacher: Path) -> None:
    student = init_student(load(bert_teacher), (0, 2))
    frozen = freeze(student, ("embeddings", "1"))
    assert "distilbert.embeddings.word_embeddings.weight" in frozen
    assert any(name.startswith("distilbert.transformer.layer.1.") for name in frozen)
    assert not any(name.startswith("distilbert.transformer.layer.0.") for name in frozen)
    assert "vocab_transform.weight" not in frozen
    with pytest.raises(InvalidOptionError, match="--freeze 'layer9'"):
        freeze(student, ("layer9",))
