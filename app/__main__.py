"""`python -m app [--model-dir DIR ...] [--models-file F] [--host H] ...`: every setting is also a flag.

Flags override DISTILSERVE_* env vars, which override the defaults.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any

from app.settings import Settings, env_name, setting_fields, settings_markdown


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app",
        description="Serve exported DistilBERT-class models: fill-mask and embeddings on ONNX Runtime.",
        epilog="Every flag is also an environment variable DISTILSERVE_<NAME>; flags win.",
    )
    for name, field in setting_fields():
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description} [env {env_name(name)}; default: {default if default is not None else 'unset'}]"
        help_text = help_text.replace("%", "%%")
        if _is_bool(field.annotation):
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif typing.get_origin(field.annotation) is list:
            help_text += " (repeatable)"
            parser.add_argument(flag, dest=name, action="append", default=None, metavar="VALUE", help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, metavar=_metavar(field.annotation), help=help_text)
    parser.add_argument(
        "--settings-markdown", action="store_true", help="Print the settings table (for the README) and exit."
    )
    return parser


def _metavar(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        annotation = args[0] if args else annotation
    if typing.get_origin(annotation) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(annotation))) + "}"
    return getattr(annotation, "__name__", "VALUE").upper()


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {name: value for name, value in vars(args).items() if name in Settings.model_fields and value is not None}
    return Settings(**overrides)


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.settings_markdown:
        sys.stdout.write(settings_markdown())
        return 0
    from pydantic import ValidationError

    try:
        settings = settings_from_args(args)
    except ValidationError as error:
        parser.error("; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors()))
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    from app.connections import serve
    from app.server import StartupError, create_app

    try:
        app = create_app(settings)
    except StartupError as error:
        logging.getLogger("distilserve").error("cannot start: %s", error)
        return 2
    # Uvicorn's SIGTERM handling stops accepting, lets in-flight requests finish (for at most
    # graceful_shutdown_timeout_s; what is left is answered 503), then runs the lifespan shutdown,
    # which drains the batcher. Afterwards it restores the previous handler and re-raises the signal;
    # this handler turns that into a clean exit 0 (orchestrators read a signal death as a crash).
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        serve(app, settings)
    except OSError as error:  # the address cannot be bound
        logging.getLogger("distilserve").error("cannot listen on %s:%d: %s", settings.host, settings.port, error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
