"""python -m model_export.default_model {corpus,train,build}"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_export.default_model", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    corpus = commands.add_parser("corpus", help="download and unpack the Debian packages the corpus comes from")
    corpus.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    train = commands.add_parser("train", help="train the fill-mask demo (CPU, ~40 minutes); writes its weights, slice and log")
    train.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    train.add_argument("--method", choices=("top-layers", "lora"))
    for name, kind in (("trainable-layers", int), ("lora-rank", int), ("train-tokens", int), ("steps", int),
                       ("body-lr", float), ("head-lr", float), ("eval-chars", int), ("threads", int),
                       ("budget-minutes", float)):
        train.add_argument(f"--{name}", type=kind)
    train.add_argument("--out-dir", type=Path, help="write weights, log and slice here instead of the package")
    build = commands.add_parser("build", help="build the offline default's two model directories (converted, exported)")
    build.add_argument("--out", type=Path, help="root directory to write (default: <cache>/offline-default)")
    build.add_argument("--force", action="store_true", help="rebuild even when a directory is current")
    args = parser.parse_args(argv)

    if args.command == "corpus":
        from model_export.default_model.corpus import fetch

        print(fetch(args.corpus_dir))
    elif args.command == "train":
        import dataclasses

        from model_export.default_model import PACKAGE_DIR
        from model_export.default_model.train import TrainConfig, train

        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        overrides = {k: v for k, v in vars(args).items() if k in fields and v is not None}
        out_dir = args.out_dir or PACKAGE_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        train(dataclasses.replace(TrainConfig(), **overrides), args.corpus_dir, out_dir)
    else:
        from model_export.default_model.build import build_offline_default, default_root

        for directory in build_offline_default(args.out or default_root(), force=args.force):
            print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
