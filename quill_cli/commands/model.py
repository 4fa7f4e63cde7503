"""`quill model prepare`: convert the bundled default model once and print its folder."""

from __future__ import annotations

import argparse

from quill import envs


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "model", help="prepare the bundled default model (convert once) and print its folder"
    )
    p.add_argument("action", choices=("prepare",))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    envs.force_offline()
    from serving.model_store import ensure_default_model

    print(ensure_default_model())
    return 0
