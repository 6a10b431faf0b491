"""Kiln's CRDs reject every manifest of the invalid-manifest corpus, as the API server words it.

Each file of ``tests/corpus/invalid/`` (format in ``tests/corpus/README.md``) holds a
manifest, optionally a merge patch to apply to it once created, and the expected answer:
the status code and the ``details.causes`` (compared as a set). The rest of the Status is
checked against the API server's rules: ``reason: Invalid`` for 422, the kind, group and
name in ``details``, and a message that lists every cause.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import ApiError, KubeClient, Obj

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "invalid"
CASES = sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []

pytestmark = pytest.mark.usefixtures("kiln_crds")


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text())
    return case


def cause_set(causes: list[Obj]) -> set[tuple[str, str, str]]:
    return {(c.get("field", ""), c.get("reason", ""), c.get("message", "")) for c in causes}


def test_the_corpus_is_there() -> None:
    assert len(CASES) >= 10, f"expected the invalid-manifest corpus under {CORPUS}"
    for path in CASES:
        case = load_case(path)
        assert {"description", "manifest", "expect"} <= set(case), path.name


def submit(
    kube: KubeClient, manifest: Obj, namespace: str, created: Obj | None, update: Any
) -> None:
    """Send the request under test: the create, or the update of what was created."""
    if created is None:
        kube.create(manifest, namespace)
    else:
        name = created["metadata"]["name"]
        kube.patch(manifest["apiVersion"], manifest["kind"], name, namespace, update)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_invalid_manifest_is_rejected_with_the_expected_causes(
    kube: KubeClient, namespace: str, path: Path
) -> None:
    case = load_case(path)
    manifest: Obj = case["manifest"]
    expect: Obj = case["expect"]
    created: Obj | None = None
    if "update" in case:
        created = kube.create(manifest, namespace)  # the starting point must be valid
    with pytest.raises(ApiError) as caught:
        submit(kube, manifest, namespace, created, case.get("update"))
    error = caught.value
    assert error.status == expect["code"], error.body
    details = error.body.get("details", {})
    assert cause_set(details.get("causes", [])) == cause_set(expect["causes"]), error.message
    if expect["code"] == 422:
        group = manifest["apiVersion"].split("/")[0]
        name = manifest["metadata"]["name"]
        assert error.reason == "Invalid"
        assert (details["kind"], details["group"], details["name"]) == (
            manifest["kind"],
            group,
            name,
        )
        assert error.message.startswith(f'{manifest["kind"]}.{group} "{name}" is invalid: ')
        for cause in expect["causes"]:
            assert f"{cause['field']}: {cause['message']}" in error.message
    # The rejected request stored nothing.
    stored = kube.get_or_none(
        manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"], namespace
    )
    if created is None:
        assert stored is None
    else:
        assert stored == created
