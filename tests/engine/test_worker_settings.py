"""The worker's slot and cache settings: taken from the environment, refused with the variable's name when impossible."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.worker import UnsandboxedWorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from activities.rule import Deps
from models.settings import get_settings
from activities.worker import build_worker


async def test_the_worker_runs_as_many_tasks_at_once_as_its_settings_say(dev_env, tmp_path, monkeypatch):
    monkeypatch.setenv("STAGEFLOW_WORKFLOW_TASK_SLOTS", "7")
    monkeypatch.setenv("STAGEFLOW_ACTIVITY_SLOTS", "9")
    monkeypatch.setenv("STAGEFLOW_WORKFLOW_CACHE", "2500")
    settings = get_settings(data_dir=tmp_path)
    worker = build_worker(dev_env.client, Deps(settings=settings, database=None, client=dev_env.client))
    config = worker.config()
    assert (config["max_concurrent_workflow_tasks"], config["max_concurrent_activities"]) == (7, 9)
    assert config["max_cached_workflows"] == 2500


async def test_the_worker_keeps_a_thousand_workflows_unless_told(dev_env, tmp_path, monkeypatch):
    monkeypatch.delenv("STAGEFLOW_WORKFLOW_CACHE", raising=False)
    settings = get_settings(data_dir=tmp_path)
    worker = build_worker(dev_env.client, Deps(settings=settings, database=None, client=dev_env.client),
                          task_queue="cache-default")
    assert worker.config()["max_cached_workflows"] == 1000


@pytest.mark.parametrize("value, runner", [
    (None, UnsandboxedWorkflowRunner), ("0", UnsandboxedWorkflowRunner), ("1", SandboxedWorkflowRunner),
    ("true", SandboxedWorkflowRunner),
])
async def test_workflows_run_in_the_sandbox_when_the_setting_says(dev_env, tmp_path, monkeypatch, value, runner):
    if value is None:
        monkeypatch.delenv("STAGEFLOW_WORKFLOW_SANDBOX", raising=False)
    else:
        monkeypatch.setenv("STAGEFLOW_WORKFLOW_SANDBOX", value)
    settings = get_settings(data_dir=tmp_path)
    deps = Deps(settings=settings, database=None, client=dev_env.client)
    worker = build_worker(dev_env.client, deps, task_queue=f"sandbox-{value}")
    assert type(worker.config()["workflow_runner"]) is runner


@pytest.mark.parametrize("name, value", [
    ("STAGEFLOW_WORKFLOW_SANDBOX", "sometimes"),
    ("STAGEFLOW_WORKFLOW_TASK_SLOTS", "0"),
    ("STAGEFLOW_ACTIVITY_SLOTS", "-3"),
    ("STAGEFLOW_WORKFLOW_TASK_SLOTS", "many"),
    ("STAGEFLOW_WORKFLOW_CACHE", "-1"),
    ("STAGEFLOW_WORKFLOW_CACHE", "lots"),
])
def test_impossible_slot_counts_are_refused_naming_the_variable(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as refused:
        get_settings()
    assert name in str(refused.value)


async def test_the_service_connects_on_its_data_converter(dev_env, tmp_path):
    from workflows.connection import connect
    from workflows.converter import DATA_CONVERTER

    settings = get_settings(data_dir=tmp_path).model_copy(
        update={"temporal_address": dev_env.client.service_client.config.target_host})
    client = await connect(settings, attempts=1)
    assert (client.data_converter, client.namespace) == (DATA_CONVERTER, settings.temporal_namespace)
