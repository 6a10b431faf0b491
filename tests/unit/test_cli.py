"""The installed console scripts start and explain themselves."""

import shutil
import subprocess

import pytest


def operator_refusal(*args: str) -> str:
    """``kiln-operator ARGS``'s usage error (exit 2, as argparse refuses): its stderr."""
    result = subprocess.run(["kiln-operator", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    return result.stderr


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
    assert "--namespace" in operator_refusal()


@pytest.mark.parametrize("namespace", ["team-*", "Team", "a" * 64, "ml."])
def test_operator_refuses_a_namespace_that_is_not_an_exact_name(namespace: str) -> None:
    assert "is not a namespace name" in operator_refusal("--namespace", namespace)


def test_operator_refuses_a_worker_count_out_of_range() -> None:
    assert "--workers must lie in 1..64" in operator_refusal("-A", "--workers", "0")


def test_operator_takes_the_model_server_image_and_refuses_a_zero_validation_deadline() -> None:
    from kiln_operator.cli import parse_args

    options = parse_args(["-A", "--model-server-image", "registry.example/kiln-server:1"])
    assert options.model_server_image == "registry.example/kiln-server:1"
    assert options.validation_deadline_seconds == 600
    refusal = operator_refusal("-A", "--validation-deadline", "0")
    assert "--validation-deadline must be at least 1" in refusal


def test_operator_takes_model_server_pull_secrets_once_each_and_refuses_a_bad_name() -> None:
    from kiln_operator.cli import parse_args

    assert parse_args(["-A"]).model_server_pull_secrets == ()
    options = parse_args(
        ["-A", *("--model-server-pull-secret", "regcred") * 2, "--model-server-pull-secret", "b.c"]
    )
    assert options.model_server_pull_secrets == ("regcred", "b.c")
    refusal = operator_refusal("-A", "--model-server-pull-secret", "Reg_Cred")
    assert "--model-server-pull-secret 'Reg_Cred' is not a Secret name" in refusal
