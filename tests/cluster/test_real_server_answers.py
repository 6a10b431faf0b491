"""Every backend answers as kube-apiserver v1.28.7 did where the emulator once differed.

``reference/realk8s-answers.json`` holds, for each request of :mod:`tests.record.answers`,
the part of a real server's answer that matters: a new CRD's status (not yet established),
the shape of list items (built-in kinds without apiVersion/kind, custom resources with
them), resource quantities in canonical form, a Job's zero counts omitted, and what a
server-side apply does to the last-applied annotation of a client-side ``kubectl apply``
(under the field manager ``kubectl``: conflicts it explains are forgiven and it is rewritten
to the applied configuration; otherwise it is left alone, and never added).
"""

from __future__ import annotations

import json

import pytest

from tests.record.answers import ANSWERS, OUTPUT
from tests.support.kube import KubeClient

RECORDED = json.loads(OUTPUT.read_text())

pytestmark = pytest.mark.usefixtures("widget_crd")


def test_every_request_has_a_recorded_answer() -> None:
    assert sorted(RECORDED) == sorted(ANSWERS)


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_answer_matches_the_real_servers(kube: KubeClient, namespace: str, name: str) -> None:
    assert ANSWERS[name](kube, namespace) == RECORDED[name]
