"""The worker's slot settings: taken from the environment, refused with the variable's name when impossible."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from activities.rule import Deps
from models.settings import get_settings
from activities.worker import build_worker


async def test_the_worker_runs_as_many_tasks_at_once_as_its_settings_say(dev_env, tmp_path, monkeypatch):
    monkeypatch.setenv("STAGEFLOW_WORKFLOW_TASK_SLOTS", "7")
    monkeypatch.setenv("STAGEFLOW_ACTIVITY_SLOTS", "9")
    settings = get_settings(data_dir=tmp_path)
    worker = build_worker(dev_env.client, Deps(settings=settings, database=None, client=dev_env.client))
    config = worker.config()
    assert (config["max_concurrent_workflow_tasks"], config["max_concurrent_activities"]) == (7, 9)


@pytest.mark.parametrize("name, value", [
    ("STAGEFLOW_WORKFLOW_TASK_SLOTS", "0"),
    ("STAGEFLOW_ACTIVITY_SLOTS", "-3"),
    ("STAGEFLOW_WORKFLOW_TASK_SLOTS", "many"),
])
def test_impossible_slot_counts_are_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        get_settings()
    assert name in str(refused.value)
