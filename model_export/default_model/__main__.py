"""python -m model_export.default_model {corpus,train,build}"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from model_export.cli_logging import add_verbose_flag, configure_logging


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
    add_verbose_flag(build)
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
        return _build(args.out, args.force, args.verbose)
    return 0


def _build(out: Path | None, force: bool, verbose: bool) -> int:
    """The server runs this in a child process on its first start and shows the `error: ` line as the
    reason it cannot start, so every expected failure is that one line, never a traceback."""
    configure_logging(verbose)
    from model_export.default_model.build import build_offline_default, default_root
    from model_export.errors import ExportError

    try:
        directories = build_offline_default(out or default_root(), force=force)
    except (ExportError, OSError, RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    for directory in directories:
        print(directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
