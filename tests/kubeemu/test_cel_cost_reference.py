"""The emulator's CEL cost estimate equals a real kube-apiserver's for every rule Kiln ships.

``tests/cluster/reference/kiln-cel-costs.json`` holds, for each rule in ``crds/``, the cost
kube-apiserver v1.28.7 estimated for it (recorded by ``python -m tests.record.cel_costs``).
The emulator refuses a CRD over the budget by its own estimate, so an estimate that drifts
from the real one would accept what a real server refuses, or the reverse.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.kubeemu.celcost import rule_cost
from tests.record.cel_costs import alone, rule_sites
from tests.support.backends import crd_manifests

RECORDED = Path(__file__).resolve().parents[1] / "cluster" / "reference" / "kiln-cel-costs.json"
ENTRIES: list[dict[str, Any]] = json.loads(RECORDED.read_text())
SCHEMAS = {
    crd["metadata"]["name"]: crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for crd in crd_manifests()
}


def node_at(schema: dict[str, Any], path: list[str]) -> dict[str, Any]:
    node = schema
    for key in path:
        node = node[key]
    return node


def test_every_shipped_rule_has_a_recorded_real_cost() -> None:
    shipped = {
        (name, rule["rule"])
        for name, schema in SCHEMAS.items()
        for _, node in rule_sites(schema)
        for rule in node["x-kubernetes-validations"]
    }
    assert shipped == {(e["crd"], e["rule"]) for e in ENTRIES}, "re-record the costs"


@pytest.mark.parametrize(
    "entry", ENTRIES, ids=[f"{e['crd'].split('.')[0]}:{'.'.join(e['path'][1::2])}" for e in ENTRIES]
)
def test_estimate_equals_the_real_servers(entry: dict[str, Any]) -> None:
    node = node_at(SCHEMAS[entry["crd"]], entry["path"])
    index = [r["rule"] for r in node["x-kubernetes-validations"]].index(entry["rule"])
    single = alone(node, index)
    assert rule_cost(entry["rule"], single) == entry["cost"]
