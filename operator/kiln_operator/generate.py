"""``python -m kiln_operator.generate --crds crds --docs docs/api.md`` (``make crds``):
write the CRDs (:mod:`.crdgen`) and the API reference (:mod:`.apidocs`) from the models."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from kiln_operator.apidocs import render_reference
from kiln_operator.crdgen import write_crds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kiln_operator.generate", description=__doc__)
    parser.add_argument("--crds", type=Path, default=Path("crds"), help="output folder")
    parser.add_argument("--docs", type=Path, default=Path("docs/api.md"), help="reference file")
    args = parser.parse_args(argv)
    for path in write_crds(args.crds):
        print(f"wrote {path}")
    args.docs.parent.mkdir(parents=True, exist_ok=True)
    args.docs.write_text(render_reference(), encoding="utf-8")
    print(f"wrote {args.docs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
