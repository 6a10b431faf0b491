"""Command line of ``kiln-server``: ``serve``, ``validate`` and ``fetch``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiln-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve a model over the Open Inference Protocol v2")
    sub.add_parser("validate", help="fetch, verify, load and test-run a model artifact")
    sub.add_parser("fetch", help="download a model artifact and verify its digest")
    parser.parse_args(argv)
    return 2
