"""Recorders: they ask a real kube-apiserver and write its answers into the repository.

Each module runs with ``KUBEBUILDER_ASSETS`` naming a folder with ``etcd`` and
``kube-apiserver`` (``setup-envtest``, or ``../shared/realk8s/build.sh`` on this machine):

- ``python -m tests.record.crd_corpus``: the answers to ``tests/corpus/invalid-crds/``;
- ``python -m tests.record.cel_costs``: the CEL cost of every rule in ``crds/``
  (``tests/cluster/reference/kiln-cel-costs.json``);
- ``python -m tests.record.answers``: the answers in
  ``tests/cluster/reference/realk8s-answers.json``.

Only a real server writes these files; the emulator and the tests are held to them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.backends import open_cluster
from tests.support.kube import KubeClient


@contextlib.contextmanager
def real_server() -> Iterator[KubeClient]:
    """A client of a fresh etcd + kube-apiserver from ``KUBEBUILDER_ASSETS`` (the cluster
    tier's envtest backend)."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        print("set KUBEBUILDER_ASSETS to a folder with etcd and kube-apiserver", file=sys.stderr)
        raise SystemExit(2)
    with (
        tempfile.TemporaryDirectory() as workdir,
        open_cluster({"KUBEBUILDER_ASSETS": assets}, Path(workdir)) as cluster,
    ):
        yield cluster.client
