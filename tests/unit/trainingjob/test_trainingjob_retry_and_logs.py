"""After a failed reconcile: transient errors retry soon and back off, errors a human must
fix retry slowly but never stop; and every log line names its object, in the text and as
the structured ``object`` field kopf's JSON log format writes."""

from __future__ import annotations

import logging

import pytest

from kiln_operator.controller.queue import Backoff
from kiln_operator.controller.runner import PERMANENT_BACKOFF
from kiln_operator.objectlog import OPERATOR_LOGGER, object_log


@pytest.mark.parametrize(
    ("transient", "failures", "delay"),
    [
        pytest.param(True, 1, 0.5, id="transient-first"),
        pytest.param(True, 3, 2.0, id="transient-third"),
        pytest.param(True, 50, 300.0, id="transient-capped"),
        pytest.param(True, 10_000, 300.0, id="transient-capped-without-overflow"),
        pytest.param(False, 1, 30.0, id="permanent-first"),
        pytest.param(False, 2, 60.0, id="permanent-backs-off"),
        pytest.param(False, 50, 300.0, id="permanent-capped-but-retried"),
    ],
)
def test_the_retry_delay_doubles_per_failure_up_to_its_cap(
    transient: bool, failures: int, delay: float
) -> None:
    backoff = Backoff() if transient else PERMANENT_BACKOFF
    assert backoff.delay(failures) == delay


def test_a_log_line_names_its_object_in_text_and_as_a_field(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger=OPERATOR_LOGGER):
        object_log("TrainingJob", "ml", "iris").info("started run %s", "iris-r1-abc")
    (record,) = caplog.records
    assert record.getMessage() == "TrainingJob ml/iris: started run iris-r1-abc"
    assert record.object == {"kind": "TrainingJob", "namespace": "ml", "name": "iris"}  # type: ignore[attr-defined]
