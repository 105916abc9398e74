"""The Temporal worker of stageflow's workflows and rule activities, built on a set of dependencies: the
service's own (`worker.py`) or a simulation's scratch database and recorders."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities.steps import WorkerActivities
from activities.rule import Deps
from activities.rules import CUSTOM_RULES, RULE_TYPES, rule_types
from workflows.entry import StageEntryWorkflow
from workflows.item import ItemWorkflow
from workflows.moment import DueMomentWorkflow
from workflows.operations import ApplyVersionWorkflow, RetryFailuresWorkflow

WORKFLOWS = [ItemWorkflow, StageEntryWorkflow, ApplyVersionWorkflow, RetryFailuresWorkflow, DueMomentWorkflow]


def workflow_runner(sandbox: bool) -> SandboxedWorkflowRunner | UnsandboxedWorkflowRunner:
    """Without the sandbox, or in it: workflow modules import only the standard library, temporalio and plain
    data, so every import is passed through instead of being re-imported for each workflow run, and the sandbox
    still refuses non-deterministic calls such as datetime.now()."""
    if not sandbox:
        return UnsandboxedWorkflowRunner()
    return SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def build_worker(client: Client, deps: Deps, task_queue: str | None = None, **options) -> Worker:
    activities = WorkerActivities(deps, RULE_TYPES, CUSTOM_RULES, rule_types)
    # Few workflow task slots: they share one event loop, and when many timers fire at once 200 slots made every
    # task slow (thousands over 5 s in a burst of 1,000) where 20 keep each short at the same rate.
    options.setdefault("max_concurrent_activities", deps.settings.worker_activity_slots)
    options.setdefault("max_concurrent_workflow_tasks", deps.settings.worker_workflow_task_slots)
    options.setdefault("max_cached_workflows", deps.settings.worker_workflow_cache)
    options.setdefault("workflow_runner", workflow_runner(deps.settings.workflow_sandbox))
    return Worker(
        client,
        task_queue=task_queue or deps.settings.temporal_task_queue,
        workflows=WORKFLOWS,
        activities=activities.all(),
        **options,
    )
