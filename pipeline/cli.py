"""`tfpipe`: the command line. Heavy imports (TensorFlow, Beam, Prefect) happen inside commands, so --help is instant."""

from __future__ import annotations

import argparse
import sys


def _cmd_titanic(args) -> int:
    from examples.titanic import seed_estimator

    argv = ["--steps", str(args.steps)] + (["--workdir", args.workdir] if args.workdir else [])
    seed_estimator.main(argv)
    return 0


def _cmd_version(args) -> int:
    from importlib.metadata import version

    for dist in ("tfpipe", "tensorflow", "tf-keras", "tensorflow-transform", "apache-beam", "prefect", "ml-metadata"):
        print(f"{dist} {version(dist)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfpipe",
        description="TensorFlow training pipelines: Estimator training, tf.Transform, Prefect, ML Metadata.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("titanic", help="run the seed's Titanic Estimator program (train, evaluate, predict)")
    p.add_argument("--workdir", help="where the data split and the model go (default: a new temp dir)")
    p.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    p.set_defaults(func=_cmd_titanic)
    p = sub.add_parser("version", help="print the versions of tfpipe and the libraries it runs on")
    p.set_defaults(func=_cmd_version)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
