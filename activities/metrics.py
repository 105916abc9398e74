"""The worker's metrics: the Temporal runtime that serves them on `STAGEFLOW_WORKER_METRICS_PORT` (the SDK's own
`temporal_*` metrics), and stageflow's rule metrics recorded through that runtime's meter, so one endpoint serves
both.

stageflow's metrics:
  stageflow_rules_total{type, outcome}       each rule run once, at its final outcome (done, skipped, cancelled,
                                             failed), counted when that outcome is first stored
  stageflow_rule_lateness_seconds            how long after its due time a rule's run started (rules with a due time)
  stageflow_trigger_matches_total{outcome}   events a trigger of their type fired on (matched) or did not (missed)
  stageflow_effects_found_total              rule runs that found their effect stored by an earlier attempt

A count is made when the transaction that stores the outcome commits (`on_commit`), so an attempt whose work is
undone counts nothing. Recording a metric never raises: a failure is logged and the rule goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone

from sqlalchemy import event
from sqlmodel import Session
from temporalio import activity
from temporalio.common import MetricMeter
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from models.settings import Settings

log = logging.getLogger("stageflow.metrics")

RULES = "stageflow_rules_total"
LATENESS = "stageflow_rule_lateness_seconds"
TRIGGER_MATCHES = "stageflow_trigger_matches_total"
EFFECTS_FOUND = "stageflow_effects_found_total"

LATENESS_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600,
                    86400)
"""From a tenth of a second (a rule on time) to a day (a rule that waited for a worker overnight)."""

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
"""The SDK's latencies (schedule-to-start, execution), in seconds."""

SDK_LATENCIES = (
    "temporal_workflow_task_schedule_to_start_latency", "temporal_workflow_task_execution_latency",
    "temporal_workflow_task_replay_latency", "temporal_workflow_endtoend_latency",
    "temporal_activity_schedule_to_start_latency", "temporal_activity_execution_latency",
    "temporal_activity_succeed_endtoend_latency", "temporal_local_activity_execution_latency",
    "temporal_local_activity_succeed_endtoend_latency", "temporal_request_latency", "temporal_long_request_latency",
)

_PENDING = "stageflow.metrics.pending"
_LISTENING = "stageflow.metrics.listening"


def worker_runtime(settings: Settings) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics at `http://<host>:<STAGEFLOW_WORKER_METRICS_PORT>/metrics`;
    None when that setting is unset, or when the port cannot be taken (logged: the worker runs without metrics
    rather than not at all)."""
    port = settings.worker_metrics_port
    if port is None:
        return None
    buckets = {LATENESS: list(LATENESS_BUCKETS), **{name: list(SECONDS_BUCKETS) for name in SDK_LATENCIES}}
    try:
        return Runtime(telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"0.0.0.0:{port}", durations_as_seconds=True, histogram_bucket_overrides=buckets,
            ),
            global_tags={"service_name": "stageflow-worker"},
            attach_service_name=False,
        ))
    except Exception:  # noqa: BLE001 - metrics never keep the worker from running
        log.exception("cannot serve the worker's metrics on port %s; running without them", port)
        return None


class RuleMetrics:
    """stageflow's rule metrics on a Temporal metric meter (the no-op meter when the worker serves none)."""

    def __init__(self, meter: MetricMeter | None = None) -> None:
        meter = meter or MetricMeter.noop
        self.enabled = meter is not MetricMeter.noop
        self._rules = meter.create_counter(RULES, "Rule runs by rule type and final outcome", "1")
        self._lateness = meter.create_histogram_float(
            LATENESS, "Seconds between a rule's due time and the start of its run", "s"
        )
        self._triggers = meter.create_counter(TRIGGER_MATCHES, "Events checked against the triggers of their type", "1")
        self._found = meter.create_counter(EFFECTS_FOUND, "Rule runs that found their effect already stored", "1")

    def after_commit(self, session: Session, record: Callable[[], None]) -> None:
        """`record` once the session's transaction commits (nothing at all when no metrics are served)."""
        if self.enabled:
            on_commit(session, record)

    def rule_finished(self, rule_type: str, outcome: str, late: float | None = None) -> None:
        """One rule run ended with `outcome`; `late`: seconds after its due time it started."""
        self._rules.add(1, {"type": rule_type or "unknown", "outcome": outcome})
        if late is not None:
            self._lateness.record(max(late, 0.0))

    def trigger_checked(self, matched: bool) -> None:
        self._triggers.add(1, {"outcome": "matched" if matched else "missed"})

    def effect_found(self) -> None:
        self._found.add(1)


def on_commit(session: Session, record: Callable[[], None]) -> None:
    """Calls `record` once the session's transaction commits, and never if it is rolled back. An error in `record`
    is logged, never raised."""
    if not session.info.get(_LISTENING):
        session.info[_LISTENING] = True
        event.listen(session, "after_commit", _flush)
        event.listen(session, "after_rollback", _drop)
    session.info.setdefault(_PENDING, []).append(record)


def _flush(session: Session) -> None:
    for record in session.info.pop(_PENDING, None) or []:
        try:
            record()
        except Exception:  # noqa: BLE001 - a metric never breaks a rule
            log.warning("recording a metric failed", exc_info=True)


def _drop(session: Session) -> None:
    session.info.pop(_PENDING, None)


def lateness(due: datetime | None) -> float | None:
    """Seconds between `due` and the start of the running activity attempt (by the Temporal server's clock, which
    due times are counted on); None without a due time, or when it cannot be told."""
    if due is None:
        return None
    try:
        started = activity.info().started_time if activity.in_activity() else None
        started = started or datetime.now(timezone.utc)
        if due.tzinfo is None:
            due = due.replace(tzinfo=timezone.utc)
        return (started - due).total_seconds()
    except Exception:  # noqa: BLE001 - a metric never breaks a rule
        log.debug("cannot tell a rule's lateness", exc_info=True)
        return None
