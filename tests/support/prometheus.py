"""A real Prometheus and promtool, and prometheus-operator's schemas, for the monitoring
tests.

``make prometheus`` (``.ci/install-prometheus``) puts both binaries beside the virtual
environment's interpreter, from Debian's ``prometheus`` package, and the schema validators
of the npm package ``@kubernetes-models/prometheus-operator`` under the environment's
``share/kiln-monitoring``; CI runs it before the tests. A developer may also have the
binaries on PATH. Tests that need them skip, saying how to install them, only where they
are missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.ports import free_port
from tests.support.tools import installed


def require(name: str) -> str:
    """The ``prometheus`` or ``promtool`` binary, or skip with the way to install it."""
    found = installed(name)
    if found is None:
        pytest.skip(
            f"{name} is not installed: run `make prometheus` (.ci/install-prometheus), as CI does"
        )
    return found


def operator_schema_errors(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    """``kind/name`` -> what prometheus-operator's schema says is wrong with each object
    (an empty list when it is valid)."""
    node = shutil.which("node")
    modules = Path(sys.executable).parent.parent / "share" / "kiln-monitoring" / "node_modules"
    if node is None or not (modules / "@kubernetes-models" / "prometheus-operator").is_dir():
        pytest.skip(
            "prometheus-operator's schemas are not installed: run `make prometheus` "
            "(.ci/install-prometheus, needs node and npm), as CI does"
        )
    result = subprocess.run(
        [node, str(Path(__file__).with_name("prometheus_operator_schema.mjs")), str(modules)],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(f"the schema check failed:\n{result.stderr}")
    return {f"{v['kind']}/{v['name']}": v["errors"] for v in json.loads(result.stdout)}


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require("promtool"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def rules_file(prometheus_rule: dict[str, Any], folder: Path) -> Path:
    """A PrometheusRule's groups as the rules file Prometheus loads (what prometheus-operator
    writes for it)."""
    path = folder / "kiln.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": prometheus_rule["spec"]["groups"]}))
    return path


@dataclass
class Prometheus:
    url: str
    log: Path

    def _get(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=10) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus refused {path} {params}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar) ``expr`` evaluates to now."""
        data = self._get("/api/v1/query", query=expr)
        result = data["result"]
        return result if data["resultType"] == "vector" else [{"value": result}]

    def targets(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._get("/api/v1/targets")["activeTargets"]
        return found

    def rules(self) -> list[dict[str, Any]]:
        return [rule for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def wait_until(self, what: str, check: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} within {timeout}s; log:\n{self.log.read_text()}")
            time.sleep(0.5)


@contextmanager
def running(config: dict[str, Any], folder: Path) -> Iterator[Prometheus]:
    """A Prometheus server on a free loopback port with ``config``, storing into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    config_file = folder / "prometheus.yaml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port()
    log = folder / "prometheus.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [
                require("prometheus"),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"prometheus exited {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus was not ready in 30 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
