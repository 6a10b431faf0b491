"""The CRDs and the API reference are generated from the models, and say what users need.

Covers: committed files match the generator; every schema field is described; the
structural-schema rules a real API server enforces on CRDs; printer columns, short names and
the category; CEL rules only touch bounded lists and strings (the API server's cost budget).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.kinds import ALL_KINDS, CATEGORY, KindInfo
from kiln_operator.apidocs import render_reference
from kiln_operator.crdgen import crd, crd_filename, render_crd

ROOT = Path(__file__).resolve().parents[2]
KIND_IDS = [info.kind for info in ALL_KINDS]


def _schema(info: KindInfo) -> dict[str, Any]:
    schema: dict[str, Any] = crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_committed_crd_matches_the_generator(info: KindInfo) -> None:
    committed = (ROOT / "crds" / crd_filename(info)).read_text(encoding="utf-8")
    assert committed == render_crd(info), "crds/ is stale: run `make crds` and commit the result"


def test_committed_api_reference_matches_the_generator() -> None:
    committed = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == render_reference(), "docs/api.md is stale: run `make crds`"


def test_crd_folder_holds_exactly_the_generated_files() -> None:
    on_disk = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    assert on_disk == sorted(crd_filename(info) for info in ALL_KINDS)


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_every_schema_field_has_a_description(info: KindInfo) -> None:
    # The root's metadata is the exception: the API server allows nothing but its type.
    metadata = f"{info.kind}.metadata"
    missing = [
        path
        for path, node in _walk(_schema(info), info.kind)
        if not path.endswith(("[]", ".*")) and not node.get("description") and path != metadata
    ]
    assert missing == []


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_root_metadata_carries_nothing_but_its_type(info: KindInfo) -> None:
    assert _schema(info)["properties"]["metadata"] == {"type": "object"}


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_schema_is_structural(info: KindInfo) -> None:
    for path, node in _walk(_schema(info), info.kind):
        assert "$ref" not in node, path
        assert "type" in node or node.get("x-kubernetes-int-or-string"), f"{path} has no type"
        if node.get("type") == "object" and path.count(".") > 0:
            assert (
                "properties" in node or "additionalProperties" in node or path.endswith(".metadata")
            ), f"{path} is a free-form object"
        assert "x-kubernetes-preserve-unknown-fields" not in node, f"{path} is free-form"


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_lists_and_strings_touched_by_rules_are_bounded(info: KindInfo) -> None:
    for path, node in _walk(_schema(info), info.kind):
        if not node.get("x-kubernetes-validations"):
            continue
        for sub_path, sub in _walk(node, path):
            if sub.get("type") == "array":
                assert "maxItems" in sub, f"{sub_path} is under a CEL rule but has no maxItems"
            if sub.get("type") == "object" and "additionalProperties" in sub:
                assert "maxProperties" in sub, f"{sub_path} has no maxProperties"


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_crd_names_scope_and_status_subresource(info: KindInfo) -> None:
    doc = yaml.safe_load(render_crd(info))
    names = doc["spec"]["names"]
    assert doc["metadata"]["name"] == f"{info.plural}.kiln.dev"
    assert names["kind"] == info.kind
    assert names["shortNames"] == list(info.short_names)
    assert names["categories"] == [CATEGORY]
    version = doc["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    assert version["served"]
    assert version["storage"]


@pytest.mark.parametrize("info", ALL_KINDS, ids=KIND_IDS)
def test_printer_columns_read_ready_condition_and_age(info: KindInfo) -> None:
    columns = crd(info)["spec"]["versions"][0]["additionalPrinterColumns"]
    by_name = {c["name"]: c for c in columns}
    assert by_name["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert by_name["Age"]["type"] == "date"
    assert by_name["Model"]["jsonPath"].startswith(".spec.model")


def test_short_names_are_tj_mv_kis() -> None:
    assert [info.short_names for info in ALL_KINDS] == [("tj",), ("mv",), ("kis",)]


def test_inference_service_columns_show_serving_canary_weight_and_url() -> None:
    info = next(i for i in ALL_KINDS if i.kind == "InferenceService")
    names = [c.name for c in info.columns]
    assert {"Serving", "Canary", "Weight", "URL"} <= set(names)


def test_defaults_live_in_the_schema() -> None:
    info = next(i for i in ALL_KINDS if i.kind == "InferenceService")
    spec = _schema(info)["properties"]["spec"]["properties"]
    assert spec["rollout"]["default"] == {}
    rollout = spec["rollout"]["properties"]
    assert rollout["strategy"]["default"] == "Canary"
    assert rollout["steps"]["default"] == [
        {"weight": 10, "duration": "1m"},
        {"weight": 50, "duration": "1m"},
    ]
    assert spec["batching"]["properties"]["maxBatchSize"]["default"] == 64
