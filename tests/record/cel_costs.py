"""Record a real kube-apiserver's CEL cost estimate of every rule in Kiln's CRDs.

    KUBEBUILDER_ASSETS=/tmp/k8s/bin python -m tests.record.cel_costs

A server reports a rule's estimated cost only when it is over the budget, so each rule is
sent alone, on a copy of its schema node placed in a map of ``maxProperties: M``: the rule
then runs up to M times, and M is chosen to put it just over the per-rule budget of
10,000,000, where the server prints the factor with six decimals ("exceeds budget by factor
of 1.203117x"). cost = factor x 10,000,000 / M. The answers go to
``tests/cluster/reference/kiln-cel-costs.json``; the emulator's estimator is held to them.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.kubeemu.celcost import rule_cost
from tests.record import real_server
from tests.support.backends import crd_manifests
from tests.support.kube import ApiError, KubeClient

OUTPUT = Path(__file__).resolve().parents[1] / "cluster" / "reference" / "kiln-cel-costs.json"
PER_RULE_LIMIT = 10_000_000
_PROBES = iter(range(1_000_000))
FACTOR = re.compile(r"exceeds budget by factor of (more than 100x|[0-9.]+x)")

Schema = dict[str, Any]


def rule_sites(
    schema: Schema, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], Schema]]:
    """Every schema node that carries rules, with its path of keys from the root."""
    if schema.get("x-kubernetes-validations"):
        yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        if isinstance(sub, dict):
            yield from rule_sites(sub, (*path, "properties", name))
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from rule_sites(schema[key], (*path, key))


def alone(node: Schema, index: int) -> Schema:
    """The node with only its rule ``index``: no other rules or defaults anywhere in it."""
    copied = copy.deepcopy(node)

    def strip(schema: Schema) -> None:
        schema.pop("x-kubernetes-validations", None)
        schema.pop("default", None)
        for sub in (schema.get("properties") or {}).values():
            strip(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), dict):
                strip(schema[key])

    rule = copied["x-kubernetes-validations"][index]
    strip(copied)
    copied["x-kubernetes-validations"] = [rule]
    return copied


def probe_crd(node: Schema, times: int) -> Schema:
    """A CRD of its own (a deleted one lingers while its cleanup runs) around the node."""
    wrapped = {"type": "object", "maxProperties": times, "additionalProperties": node}
    number = next(_PROBES)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"costprobe{number}s.corpus.kiln.dev"},
        "spec": {
            "group": "corpus.kiln.dev",
            "names": {"kind": f"CostProbe{number}", "plural": f"costprobe{number}s"},
            "scope": "Namespaced",
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"wrap": wrapped}}
                            },
                        }
                    },
                }
            ],
        },
    }


def factor_at(client: KubeClient, node: Schema, times: int) -> str | None:
    """The server's factor for the rule run ``times`` times; None when within budget."""
    crd = probe_crd(node, times)
    try:
        client.create(crd)
    except ApiError as error:
        for cause in error.body.get("details", {}).get("causes", []):
            if cause.get("field", "").endswith(
                "additionalProperties.x-kubernetes-validations[0].rule"
            ):
                match = FACTOR.search(cause.get("message", ""))
                if match:
                    return match.group(1)
        raise
    client.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", crd["metadata"]["name"])
    return None


def real_cost(client: KubeClient, node: Schema, guess: float) -> int:
    """Search M until the factor is printed with six decimals; return the exact cost."""
    estimate = max(guess, 1.0)
    for _ in range(12):
        times = max(1, math.ceil(1.2 * PER_RULE_LIMIT / estimate))
        factor = factor_at(client, node, times)
        if factor is None:
            estimate /= 8
            continue
        if factor == "more than 100x":
            estimate *= 200
            continue
        value = float(factor.rstrip("x"))
        estimate = value * PER_RULE_LIMIT / times
        if value < 1.5:
            return round(estimate)
    raise RuntimeError("no precise factor found")


def main() -> int:
    recorded: list[dict[str, Any]] = []
    with real_server() as client:
        for crd in crd_manifests():
            schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            for path, node in rule_sites(schema):
                for index, rule in enumerate(node["x-kubernetes-validations"]):
                    single = alone(node, index)
                    cost = real_cost(client, single, rule_cost(rule["rule"], single))
                    recorded.append(
                        {
                            "crd": crd["metadata"]["name"],
                            "path": list(path),
                            "rule": rule["rule"],
                            "cost": cost,
                        }
                    )
                    print(f"{crd['metadata']['name']} {'.'.join(path)}: {cost}")
    OUTPUT.write_text(json.dumps(recorded, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
