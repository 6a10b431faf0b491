"""The installed console scripts start and explain themselves."""

import shutil
import subprocess

import pytest


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("kiln-operator", "--all-namespaces"),
        ("kiln-server", "serve"),
    ],
)
def test_console_script_prints_help(script: str, expected: str) -> None:
    path = shutil.which(script)
    assert path is not None, f"{script} is not installed as a console script"
    result = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_operator_requires_a_namespace_scope() -> None:
    result = subprocess.run(["kiln-operator"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--namespace" in result.stderr
