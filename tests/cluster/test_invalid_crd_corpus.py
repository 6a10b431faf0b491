"""The API server refuses every CRD of the invalid-CRD corpus, in the real server's words.

Each file of ``tests/corpus/invalid-crds/`` holds a small CustomResourceDefinition that a
real kube-apiserver v1.28 refuses (a root ``metadata`` schema with more than its type, a
default that fails its own schema or CEL rule, a rule over the CEL cost budget) and the
answer it gave, recorded with ``python -m tests.record.crd_corpus``. The same files
run on every backend, so the emulator cannot accept what a real server refuses.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cluster.test_invalid_corpus import cause_set, load_case
from tests.support.kube import ApiError, KubeClient, Obj

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "invalid-crds"
CASES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []
CRD_API = "apiextensions.k8s.io/v1"


def test_the_crd_corpus_is_there() -> None:
    assert len(CASES) >= 6, f"expected the invalid-CRD corpus under {CORPUS}"
    for path in CASES:
        case = load_case(path)
        assert {"description", "crd", "expect"} <= set(case), path.name
        assert case["expect"]["causes"], f"{path.name}: no recorded answer"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_crd_is_refused_with_the_recorded_causes(kube: KubeClient, path: Path) -> None:
    case = load_case(path)
    crd: Obj = case["crd"]
    name = crd["metadata"]["name"]
    expect: Obj = case["expect"]
    try:
        with pytest.raises(ApiError) as caught:
            kube.create(crd)
    finally:
        if kube.get_or_none(CRD_API, "CustomResourceDefinition", name) is not None:
            kube.delete(CRD_API, "CustomResourceDefinition", name)
    error = caught.value
    assert error.status == expect["code"], error.body
    assert error.reason == "Invalid"
    details = error.body.get("details", {})
    assert (details.get("kind"), details.get("group"), details.get("name")) == (
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        name,
    )
    assert cause_set(details.get("causes", [])) == cause_set(expect["causes"]), error.message
    assert error.message.startswith(
        f'CustomResourceDefinition.apiextensions.k8s.io "{name}" is invalid: '
    )
