"""python -m model_export.default_model {corpus,train,build}"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_export.default_model.build import DEFAULT_VARIANTS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.default_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="download and unpack the Debian packages the corpus comes from")
    corpus.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    train = commands.add_parser("train", help="train the masked-LM head (CPU, ~25 minutes); writes the weights and log")
    train.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    train.add_argument("--train-tokens", type=int)
    train.add_argument("--head-steps", type=int)
    train.add_argument("--threads", type=int)
    train.add_argument("--out-dir", type=Path, help="write weights, log and slice here instead of the package")
    build = commands.add_parser("build", help="convert MiniLM, attach the trained head, save and export the offline default")
    build.add_argument("--out", type=Path, help="model directory to write (default: <cache>/offline-default)")
    build.add_argument("--variants", default=",".join(DEFAULT_VARIANTS))
    build.add_argument("--force", action="store_true", help="rebuild even when the directory already verifies")
    args = parser.parse_args(argv)

    if args.command == "corpus":
        from model_export.default_model.corpus import fetch

        print(fetch(args.corpus_dir))
    elif args.command == "train":
        import dataclasses

        from model_export.default_model import HEAD_WEIGHTS, HELDOUT_SLICE, TRAINING_LOG
        from model_export.default_model.train import TrainConfig, train

        overrides = {k: v for k, v in {"train_tokens": args.train_tokens, "head_steps": args.head_steps,
                                        "threads": args.threads}.items() if v is not None}
        config = dataclasses.replace(TrainConfig(), **overrides)
        paths = {}
        if args.out_dir:
            args.out_dir.mkdir(parents=True, exist_ok=True)
            paths = {"weights_path": args.out_dir / HEAD_WEIGHTS.name, "log_path": args.out_dir / TRAINING_LOG.name,
                     "slice_path": args.out_dir / HELDOUT_SLICE.name}
        train(config, args.corpus_dir, **paths)
    else:
        from model_export.default_model.build import build_default_model, default_output_dir

        out = args.out or default_output_dir()
        print(build_default_model(out, variants=tuple(args.variants.split(",")), force=args.force))
    return 0


if __name__ == "__main__":
    sys.exit(main())
