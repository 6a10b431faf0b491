"""``kiln-operator`` that SIGKILLs itself right after creating its first object of a kind.

``python -m tests.support.crashing_operator jobs --namespace ns ...`` runs the real
operator (:func:`kiln_operator.cli.main`) with one fault injected at its API boundary: the
first successful create of a ``jobs`` (or ``modelversions``...) object is followed at once
by SIGKILL, before status can record it, as a node failure at the worst moment would. The
fault lives here, in the test support, so nothing of it ships in the operator.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from kiln_operator import cli, kube

COMMAND = [sys.executable, "-m", "tests.support.crashing_operator"]


def crash_after_create(plural: str) -> None:
    """Make :meth:`kube.Kube.create` kill the process after creating a ``plural`` object."""
    create = kube.Kube.create

    async def create_then_crash(
        self: kube.Kube, resource: kube.Resource, obj: dict[str, Any], namespace: str | None
    ) -> dict[str, Any]:
        created = await create(self, resource, obj, namespace)
        if resource.plural == plural:
            print(
                f"crash point: created {plural}/{created['metadata']['name']}; SIGKILL", flush=True
            )
            os.kill(os.getpid(), signal.SIGKILL)
        return created

    kube.Kube.create = create_then_crash  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    plural, *operator_args = argv
    crash_after_create(plural)
    return cli.main(operator_args)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
