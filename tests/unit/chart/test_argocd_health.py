"""Argo CD health checks of Kiln's kinds, run in a real Lua 5.1 interpreter (lupa).

argo-cd runs ``resource_customizations/<group>/<kind>/health.lua`` in gopher-lua (Lua 5.1)
with ``obj`` set to the live object and checks each ``health_test.yaml`` case against a
file in ``testdata/``. We do the same: the script is compiled by Lua 5.1 itself (so
``goto``, ``//`` and bit operators fail to load), in a sandbox with only the base, string,
table and math libraries, with lists as 1-indexed tables as gopher-lua decodes them.

Covers: every case of every kind gives its expected status and message; every testdata
file is a case and a valid object of its kind; each kind's cases reach every status it can
have (Healthy, Progressing, Degraded and, for TrainingJobs and InferenceServices,
Suspended); the argocd-cm snippet carries the scripts as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kiln_operator.api.inferenceservice import InferenceService
from kiln_operator.api.modelversion import ModelVersion
from kiln_operator.api.trainingjob import TrainingJob
from tests.unit.chart.test_chart_generated import generate

lua51 = pytest.importorskip(
    "lupa.lua51", reason="lupa is a dev dependency: pip install -e '.[dev]'"
)

ROOT = Path(__file__).resolve().parents[3]
CUSTOMIZATIONS = ROOT / "argocd" / "resource_customizations" / "kiln.dev"
MODELS: dict[str, Any] = {
    "TrainingJob": TrainingJob,
    "ModelVersion": ModelVersion,
    "InferenceService": InferenceService,
}
STATUSES = {
    "TrainingJob": {"Healthy", "Progressing", "Degraded", "Suspended"},
    "ModelVersion": {"Healthy", "Progressing", "Degraded"},
    "InferenceService": {"Healthy", "Progressing", "Degraded", "Suspended"},
}
#: Globals gopher-lua's base library has no counterpart for in Argo CD's sandbox.
UNSAFE = ("os", "io", "require", "dofile", "loadfile", "load", "loadstring", "package", "debug")


def _to_lua(runtime: Any, value: Any) -> Any:
    if isinstance(value, dict):
        table = runtime.table()
        for key, item in value.items():
            table[key] = _to_lua(runtime, item)
        return table
    if isinstance(value, list):
        table = runtime.table()
        for index, item in enumerate(value, start=1):
            table[index] = _to_lua(runtime, item)
        return table
    return value


def health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """What ``health.lua`` of ``kind`` returns for ``obj``."""
    runtime = lua51.LuaRuntime(register_eval=False, register_builtins=False)
    lua_globals = runtime.globals()
    for name in UNSAFE:
        lua_globals[name] = None
    lua_globals.obj = _to_lua(runtime, obj)
    script = (CUSTOMIZATIONS / kind / "health.lua").read_text()
    result = runtime.execute(script)
    return {"status": result["status"], "message": result["message"]}


def cases(kind: str) -> list[dict[str, Any]]:
    tests: list[dict[str, Any]] = yaml.safe_load(
        (CUSTOMIZATIONS / kind / "health_test.yaml").read_text()
    )["tests"]
    return tests


ALL_CASES = [
    pytest.param(kind, case, id=f"{kind}-{Path(case['inputPath']).stem}")
    for kind in MODELS
    for case in cases(kind)
]


@pytest.mark.parametrize(("kind", "case"), ALL_CASES)
def test_health_check_gives_the_expected_status_and_message(
    kind: str, case: dict[str, Any]
) -> None:
    obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
    assert health(kind, obj) == case["healthStatus"]


@pytest.mark.parametrize("kind", list(MODELS))
def test_every_testdata_file_is_a_case_and_a_valid_object(kind: str) -> None:
    used = {case["inputPath"] for case in cases(kind)}
    on_disk = {f"testdata/{p.name}" for p in (CUSTOMIZATIONS / kind / "testdata").glob("*.yaml")}
    assert used == on_disk
    for path in sorted(on_disk):
        obj = yaml.safe_load((CUSTOMIZATIONS / kind / path).read_text())
        assert obj["kind"] == kind
        MODELS[kind].model_validate(obj)


@pytest.mark.parametrize("kind", list(MODELS))
def test_cases_reach_every_status_of_the_kind(kind: str) -> None:
    assert {case["healthStatus"]["status"] for case in cases(kind)} == STATUSES[kind]
    assert all(case["healthStatus"]["message"] for case in cases(kind))


@pytest.mark.parametrize("kind", list(MODELS))
def test_a_generation_the_operator_has_not_seen_is_progressing(kind: str) -> None:
    # Whatever the status says, it describes an older spec.
    for case in cases(kind):
        obj = yaml.safe_load((CUSTOMIZATIONS / kind / case["inputPath"]).read_text())
        obj["metadata"]["generation"] = 99
        assert health(kind, obj) == {
            "status": "Progressing",
            "message": "Waiting for the operator to observe generation 99",
        }


def test_lua_5_1_refuses_what_argo_cd_cannot_run() -> None:
    runtime = lua51.LuaRuntime()
    for newer in ("local x = 7 // 2", "goto done ::done::", "local x = 1 & 2"):
        with pytest.raises(lua51.LuaSyntaxError):
            runtime.execute(newer)


def test_argocd_cm_snippet_carries_the_scripts() -> None:
    snippet = yaml.safe_load((ROOT / "argocd" / "argocd-cm.yaml").read_text())
    assert snippet["metadata"]["name"] == "argocd-cm"
    for kind in MODELS:
        key = f"resource.customizations.health.kiln.dev_{kind}"
        assert snippet["data"][key] == (CUSTOMIZATIONS / kind / "health.lua").read_text()
    path = ROOT / "argocd" / "argocd-cm.yaml"
    assert path.read_text() == generate.argocd_cm(), "argocd/argocd-cm.yaml is stale: `make chart`"
