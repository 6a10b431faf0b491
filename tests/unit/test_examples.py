"""The manifests under examples/ are valid Kiln objects that exercise most of the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.kinds import ALL_KINDS, API_VERSION

ROOT = Path(__file__).resolve().parents[2]
MODELS = {info.kind: info.model for info in ALL_KINDS}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted((ROOT / "examples").rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("apiVersion") == API_VERSION:
                where = path.relative_to(ROOT / "examples")
                found.append((f"{where}:{doc['metadata']['name']}", doc))
    return found


DOCUMENTS = _documents()


@pytest.mark.parametrize(("where", "doc"), DOCUMENTS, ids=[w for w, _ in DOCUMENTS])
def test_example_parses_as_its_kind(where: str, doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == API_VERSION, where
    MODELS[doc["kind"]].model_validate({"spec": doc["spec"]})


def test_examples_cover_every_kind() -> None:
    assert {doc["kind"] for _, doc in DOCUMENTS} == set(MODELS)


def _leaf_paths(value: Any, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        out = set()
        for key, child in value.items():
            out |= _leaf_paths(child, f"{prefix}.{key}" if prefix else key)
        return out | {prefix}
    if isinstance(value, list):
        out = {prefix}
        for child in value:
            out |= _leaf_paths(child, f"{prefix}[]")
        return out
    return {prefix}


def _spec_fields(schema: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, child in schema.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        out.add(path)
        out |= _spec_fields(child, path)
        if "items" in child:
            out |= _spec_fields(child["items"], f"{path}[]")
    return out


@pytest.mark.parametrize("info", ALL_KINDS, ids=[i.kind for i in ALL_KINDS])
def test_examples_exercise_most_spec_fields(info: Any) -> None:
    from kiln_operator.crdgen import root_schema

    spec_schema = root_schema(info)["properties"]["spec"]
    declared = _spec_fields(spec_schema)
    used: set[str] = set()
    for _, doc in DOCUMENTS:
        if doc["kind"] == info.kind:
            used |= _leaf_paths(doc["spec"])
    coverage = len(declared & used) / len(declared)
    assert coverage >= 0.75, f"examples use {coverage:.0%} of {info.kind} spec fields"
