"""GET /ready tells a load balancer whether a replica can serve: 200 while the database and Temporal answer, 503
while Temporal is down (kill -9 of the dev server), 200 again once it is back; /health answers as before."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.faults.cluster import Cluster, wait_for
from tests.operations.support import record_figures

BACK_WITHIN = 60.0


def status(cluster: Cluster, path: str) -> tuple[int, dict]:
    try:
        answer = httpx.get(f"{cluster.api_url}{path}", timeout=15)
    except httpx.HTTPError as error:
        return 0, {"error": repr(error)}
    return answer.status_code, answer.json()


@pytest.mark.timeout(300)
def test_ready_follows_temporal_down_and_back(cluster: Cluster):
    cluster.start_temporal()
    cluster.start_api()
    up = status(cluster, "/ready")
    assert up == (200, {"status": "ok", "database": "ok", "temporal": "ok"}), up

    cluster.kill("temporal")
    killed = time.monotonic()
    down = wait_for(lambda: (lambda answer: answer if answer[0] == 503 else None)(status(cluster, "/ready")),
                    30, "GET /ready answers 503 with Temporal down", interval=0.5)
    noticed = time.monotonic() - killed
    health = status(cluster, "/health")

    cluster.start_temporal()
    restarted = time.monotonic()
    back = wait_for(lambda: (lambda answer: answer if answer[0] == 200 else None)(status(cluster, "/ready")),
                    BACK_WITHIN, "GET /ready answers 200 again after Temporal restarted", interval=0.5)
    recovered = time.monotonic() - restarted

    record_figures("readiness", {
        "seconds_to_503_after_temporal_killed": round(noticed, 1),
        "seconds_to_200_after_temporal_restarted": round(recovered, 1),
        "ready_while_down": down[1],
    })
    assert down[1]["database"] == "ok" and down[1]["temporal"].startswith("error"), down
    assert health[0] == 503 and health[1]["temporal"].startswith("error"), health
    assert back == (200, {"status": "ok", "database": "ok", "temporal": "ok"}), back
