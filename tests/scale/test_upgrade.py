"""An upgrade from the last release under load: 0.5.0's worker and APIs (its commit, checked out in a worktree)
run behind the balancer on PostgreSQL while deals come in with rules waiting on timers; then, with the load going
on, a worker of the current code starts, 0.5.0's worker stops (SIGTERM), and each API is replaced by the current
code's, one at a time. The current code migrates the database as it starts, under the old processes still running.
Every timer 0.5.0 set fires once under the current code, none early, none lost or doubled, and no workflow task
fails."""

from __future__ import annotations

import asyncio
import re
import subprocess
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.faults.cluster import ROOT, Mailbox, record_figures
from tests.faults.effects import until
from tests.scale.deploy import Installation, installation
from tests.scale.load import Load, due_after, due_rules_done, expected_outcomes, problems
from tests.scale.test_scale_out import failed_workflow_tasks

RELEASE = "0.5.0"
RELEASE_COMMIT = "6e346dc3e5b1fb4e7c7d1007379ac838525190d9"
"""The last commit of 0.5.0."""
RATE = 1.5
SECONDS = 60
SWITCH_AT = 20


def checkout(commit: str, where: Path) -> Path:
    """The release's code, in a worktree of this repository (its history must hold the commit: a full clone)."""
    done = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), commit],
                          capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"cannot check out {RELEASE} ({commit}): {done.stderr.strip()}")
    return where


def remove_checkout(where: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)], capture_output=True,
                   timeout=120)


async def upgrade(deploy: Installation, load: Load, marks: dict[str, float]) -> None:
    """The rolling upgrade: the current worker in, the old one out; then each API in turn."""
    await asyncio.sleep(max(0.0, SWITCH_AT - load.now()))
    marks["switch"] = load.now()
    marks["switched_at"] = datetime.now(timezone.utc).timestamp()
    await asyncio.to_thread(deploy.start_worker, "worker-2")
    marks["old_worker_stop_seconds"] = await asyncio.to_thread(deploy.cluster.terminate, "worker-1")
    for name in ("api-2", "api-1"):
        await asyncio.to_thread(deploy.cluster.terminate, name)
        await asyncio.to_thread(deploy.start_api, name)
    marks["upgraded"] = load.now()


@pytest.mark.timeout(480)
async def test_an_upgrade_from_the_last_release_under_load_loses_and_doubles_no_timer(tmp_path: Path):
    old = checkout(RELEASE_COMMIT, tmp_path / "release")
    try:
        with installation(tmp_path / "run", STAGEFLOW_RULE_RETRY_INITIAL_SECONDS="0.5") as deploy:
            deploy.check = "/health"
            mailbox = Mailbox(int(deploy.cluster.env["SMTP_PORT"]))
            mailbox.up()
            try:
                deploy.cluster.start_temporal()
                deploy.start_worker("worker-1", root=old)
                for name in ("api-1", "api-2"):
                    deploy.start_api(name, root=old)
                deploy.start_balancer()
                load = Load(deploy.url, deploy.cluster.headers, RATE, SECONDS, paid_in_full=False)
                await load.prepare()
                marks: dict[str, float] = {}
                await asyncio.gather(load.run(), upgrade(deploy, load, marks))
                engine = deploy.cluster.engine()
                settled = await until(lambda: due_rules_done(engine, load.pipeline_id, expected_outcomes(load)),
                                      timeout=120, interval=1.0)
                mails = Counter(re.sub(r"^Your order ", "", str(message["Subject"])) for message in mailbox.messages)
                found = problems(load, engine, mails)
                before = {f"Order {deal.number}" for deal in load.deals
                          if (deal.created_at - load.started_at).total_seconds() < marks["switch"]}
                switched = datetime.fromtimestamp(marks["switched_at"] + marks["old_worker_stop_seconds"], timezone.utc)
                carried = due_after(engine, load.pipeline_id, switched, before)
                failed = await failed_workflow_tasks(deploy.cluster.temporal_address)
            finally:
                mailbox.down()
    finally:
        remove_checkout(old)

    figures = {
        **load.figures(),
        "from": f"{RELEASE} ({RELEASE_COMMIT[:7]})",
        "switch_began_at_second": round(marks["switch"], 1),
        "upgrade_took_seconds": round(marks["upgraded"] - marks["switch"], 1),
        "old_worker_stop_seconds": round(marks["old_worker_stop_seconds"], 1),
        "deals_created_by_the_old_release": len(before),
        "timers_set_by_the_old_release_that_fired_under_the_new_code": len(carried),
        "problems": len(found),
        "workflows_with_a_failed_task": len(failed),
    }
    record_figures("upgrade", figures)
    assert settled, figures
    assert found == [], found[:20]
    assert failed == [], failed[:20]
    assert figures["failed_requests"] == 0, figures
    assert len(carried) >= 10, figures
