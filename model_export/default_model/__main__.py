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
    train = commands.add_parser("train", help="train the fill-mask demo with `python -m model_export.distill` in teacher-free "
                                "mode; writes its weights, slice and log (docs/default-model.md)")
    train.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    for name, kind in (("train-tokens", int), ("steps", int), ("batch-tokens", int), ("lr", float), ("alpha-mlm", float),
                       ("alpha-cos", float), ("precision", str), ("device", str), ("eval-chars", int), ("threads", int),
                       ("seed", int)):
        train.add_argument(f"--{name}", type=kind)
    train.add_argument("--freeze", type=lambda text: tuple(part for part in text.split(",") if part),
                       help="parts kept frozen, as the command takes them (default: embeddings,0)")
    train.add_argument("--from-run", type=Path, metavar="DIR",
                       help="adopt the command's --trained-only output from elsewhere (a GPU machine) instead of training")
    train.add_argument("--replace", action="store_true", help="adopt the new weights even if they score below the shipped ones")
    train.add_argument("--out-dir", type=Path, help="write weights, log and slice here instead of the package")
    kit = commands.add_parser("gpu-kit", help="write what a GPU host needs to run the demo's training as one command "
                              "(base weights in fp16, the packed corpus, train-demo.sh; docs/gpu.md)")
    kit.add_argument("--corpus-dir", type=Path, default=Path(".corpus"))
    kit.add_argument("--out", type=Path, default=Path(".corpus/gpu-kit"), help="(default: .corpus/gpu-kit, git-ignored)")
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
        train(dataclasses.replace(TrainConfig(), **overrides), args.corpus_dir, out_dir, from_run=args.from_run, replace=args.replace)
    elif args.command == "gpu-kit":
        from model_export.default_model.train import write_gpu_kit

        print(write_gpu_kit(args.out, args.corpus_dir))
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
