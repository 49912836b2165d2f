"""python -m model_export.distill.bench --shape base: training tokens/s for a teacher shape, no weights needed.

A random BertForMaskedLM of the shape (tiny: the tests' 4 x 32; base: bert-base-uncased's 12 x 768)
teaches a student of half its layers on random token sequences of one length, with the real
training step (masking, the three losses, AdamW). Weights do not change the cost, so these are
the figures a real run of that shape costs on this machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

SHAPES = {
    "tiny": {"hidden_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64},
    "base": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072},
}


def measure(shape: str, steps: int, batch_tokens: int, length: int, ce_positions: str, threads: int, device: str) -> dict:
    import numpy as np
    import torch
    import transformers

    from model_export.distill.config import DistillConfig
    from model_export.distill.data import BatchStream
    from model_export.distill.loop import Distiller, choose_precision
    from model_export.distill.student import choose_layers, init_student
    from model_export.distill.teacher import check_vocabulary
    from model_export.default_model.build import minilm_dir

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=30522, **SHAPES[shape])).eval()
    teacher.requires_grad_(False)
    vocabulary = check_vocabulary(transformers.AutoTokenizer.from_pretrained(minilm_dir()), 30522, "bench")
    layers = choose_layers(teacher.config.num_hidden_layers)
    config = DistillConfig(teacher="random", corpus=(), out=Path("unused"), max_steps=steps + 2, batch_tokens=batch_tokens,
                           ce_positions=ce_positions, device=device)
    rng = np.random.default_rng(0)
    words = vocabulary.replacement_ids
    sequences = [np.concatenate([[vocabulary.cls_id], rng.choice(words, length - 2), [vocabulary.sep_id]]) for _ in range(512)]
    distiller = Distiller(config, init_student(teacher, layers), teacher, BatchStream(sequences, batch_tokens, 0, 0),
                          vocabulary, choose_precision(device, "auto"))
    distiller.train_step()  # warm-up: allocator, first-call dispatch
    started, tokens = time.perf_counter(), 0.0
    for _ in range(steps):
        tokens += distiller.train_step()["tokens"]
    if distiller.precision.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"shape": shape, "teacher_layers": teacher.config.num_hidden_layers, "student_layers": len(layers),
            "hidden": SHAPES[shape]["hidden_size"], "batch_tokens": batch_tokens, "sequence_length": length,
            "ce_positions": ce_positions, "steps": steps, "seconds_per_step": round(seconds / steps, 3),
            "tokens_per_s": round(tokens / seconds, 1), "threads": threads, "device": str(distiller.precision.device),
            "precision": distiller.precision.name, "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.distill.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--length", type=int, default=128, help="tokens per sequence")
    parser.add_argument("--ce-positions", choices=("all", "masked"), default="all")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    result = measure(args.shape, args.steps, args.batch_tokens, args.length, args.ce_positions, args.threads, args.device)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
