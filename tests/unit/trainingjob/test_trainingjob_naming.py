"""Run names, spec hashes, label values and the accelerator map."""

from __future__ import annotations

import re

import pytest

from kiln_operator import naming
from kiln_operator.accelerators import AcceleratorMapError, parse_accelerator_map
from kiln_operator.decisions.intent import intent_hash, spec_intent
from tests.unit.trainingjob.factories import spec_of, training_job


def test_the_spec_hash_ignores_fields_that_do_not_change_training() -> None:
    base = {"model": "m", "image": "i:1", "output": {"uri": "pvc://c"}}
    assert naming.spec_hash(base) == naming.spec_hash(
        {**base, "schedule": "@daily", "suspend": True, "runsHistoryLimit": 2}
    )
    assert naming.spec_hash(base) != naming.spec_hash({**base, "image": "i:2"})
    assert naming.spec_hash(base) != naming.spec_hash({**base, "hyperparameters": {"c": "2"}})


def test_the_spec_hash_does_not_depend_on_key_order() -> None:
    one = {"image": "i", "env": [{"name": "A", "value": "1"}], "output": {"uri": "s3://b"}}
    two = {"output": {"uri": "s3://b"}, "env": [{"value": "1", "name": "A"}], "image": "i"}
    assert naming.spec_hash(one) == naming.spec_hash(two)


@pytest.mark.parametrize("training_job", ["iris", "a" * 253, "my.dotted.name", "x-" * 40 + "y"])
def test_run_names_are_valid_and_short(training_job: str) -> None:
    name = naming.run_name(training_job, 12, "0123abcd")
    assert len(name) <= naming.MAX_JOB_NAME
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert name.endswith("-r12-0123abcd")


def test_long_names_become_unique_label_values() -> None:
    long_a, long_b = "a" * 100, "a" * 99 + "b"
    assert len(naming.label_value(long_a)) <= 63
    assert naming.label_value(long_a) != naming.label_value(long_b)
    assert naming.label_value("short") == "short"


def test_a_service_name_starts_with_a_letter() -> None:
    assert naming.service_name("9lives-r1-0123abcd")[0].isalpha()
    assert naming.service_name("iris-r1-0123abcd") == "iris-r1-0123abcd"


@pytest.mark.parametrize(
    ("name", "env"),
    [
        ("learning_rate", "KILN_HP_LEARNING_RATE"),
        ("max-depth", "KILN_HP_MAX_DEPTH"),
        ("C", "KILN_HP_C"),
    ],
)
def test_hyperparameter_environment_names(name: str, env: str) -> None:
    assert naming.hyperparameter_env_name(name) == env


def test_an_accelerator_map_selects_node_labels() -> None:
    amap = parse_accelerator_map({"nvidia-h100": {"nvidia.com/gpu.product": "NVIDIA-H100"}})
    assert amap.node_selector("nvidia-h100") == {"nvidia.com/gpu.product": "NVIDIA-H100"}
    assert amap.node_selector("tpu") is None
    assert "known types: nvidia-h100" in amap.unknown_type_message("tpu")


@pytest.mark.parametrize(
    ("document", "error"),
    [
        pytest.param(["a"], "expected a mapping", id="list"),
        pytest.param({"gpu": {}}, "non-empty mapping", id="empty-labels"),
        pytest.param({"gpu": {"k": ["v"]}}, "needs a scalar value", id="list-value"),
    ],
)
def test_a_broken_accelerator_map_is_refused(document: object, error: str) -> None:
    with pytest.raises(AcceleratorMapError, match=error):
        parse_accelerator_map(document)


def test_the_intent_hash_ignores_values_equal_to_their_default() -> None:
    """The API server's defaults (or a release adding a defaulted field) change nothing."""
    bare = spec_of(training_job())
    defaulted = spec_of(training_job(workers=1, masterPort=29500, backoffLimit=6))
    assert intent_hash(bare) == intent_hash(defaulted)
    assert intent_hash(bare) != intent_hash(spec_of(training_job(workers=2)))
    assert "workers" not in spec_intent(defaulted)
    assert spec_intent(spec_of(training_job(workers=2)))["workers"] == 2


def test_the_intent_hash_ignores_fields_that_do_not_change_a_run() -> None:
    bare = spec_of(training_job())
    assert intent_hash(bare) == intent_hash(spec_of(training_job(schedule="@daily")))
