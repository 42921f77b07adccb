"""Scheduled workflows: one timer per active scheduled workflow, one run per due slot.

Each scheduled workflow is a key of its own keyed controller, woken at its next slot.
A pass starts a run for every slot due since the last one handled (up to the
schedule's catch-up limit), applies the schedule's concurrency policy (Allow, Forbid,
Replace), records the last slot handled (`status.lastScheduleTime`, through the one
writer of a Workflow's counters and schedule time) and returns when to wake next.
A slot's run has a name derived from the slot, so a slot is never started twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from controller.api.workflow import ConcurrencyPolicy, WorkflowSpec
from controller.api.workflowrun import RunState
from controller.kube.api import KubeApi
from controller.kube.objects import Body, Key, spec_of, status_of
from controller.logs import get_logger
from controller.runtime.controller import DONE, KeyedController, Outcome
from controller.workflows.naming import run_name
from controller.workflows.run_index import ACTIVE_STATES, Indexes
from controller.workflows.schedule import CronError, due_slots, next_wake, parse_cron
from controller.workflows.triggers import InputRefused, Triggers, is_active
from controller.workflows.workflow_status import WorkflowStatusWriter

log = get_logger("blockflow.schedules")
#: The soonest a schedule wakes again after a pass (a slot is never handled twice).
MIN_WAKE = 0.5


class Scheduler:
    def __init__(
        self,
        api: KubeApi,
        index: Indexes,
        status: WorkflowStatusWriter,
        triggers: Triggers,
        now: Callable[[], datetime],
    ) -> None:
        self.api = api
        self.index = index
        self.status = status
        self.triggers = triggers
        self.now = now
        self.controller: KeyedController[Key] = KeyedController(
            "schedules", self.reconcile, workers=2
        )

    def observe(self, body: Body, event_type: str | None) -> None:
        """Keep a timer for each active scheduled workflow, and none for the others."""
        key = Key.of(body)
        active_spec = (status_of(body).get("activation") or {}).get("spec") or {}
        scheduled = (active_spec.get("trigger") or {}).get("schedule")
        if event_type != "DELETED" and scheduled and is_active(body):
            self.controller.add(key)
        else:
            self.controller.forget(key)

    async def reconcile(self, key: Key) -> Outcome:
        body = self.status.latest(key)
        if body is None or not is_active(body):
            return DONE
        status = status_of(body)
        activation = status.get("activation") or {}
        spec = WorkflowSpec.model_validate(spec_of(activation))
        if spec.trigger is None or spec.trigger.schedule is None:
            return DONE
        schedule = spec.trigger.schedule
        try:
            cron, zone = parse_cron(schedule.cron), ZoneInfo(schedule.timezone)
        except (CronError, ValueError) as exc:
            log.warning("schedule cannot run", workflow=str(key), error=str(exc))
            return DONE
        now = self.now()
        raw_last = status.get("lastScheduleTime") or activation.get("activatedAt")
        last = datetime.fromisoformat(raw_last) if raw_last else now
        for slot in due_slots(cron, zone, last, now, schedule.max_catch_up):
            await self._slot(body, slot, schedule.concurrency_policy)
        if status.get("lastScheduleTime") != now.isoformat():
            await self.status.record_schedule(key, now)
        try:
            wake = next_wake(cron, zone, now, now)
        except CronError as exc:
            log.warning("schedule never fires", workflow=str(key), error=str(exc))
            return DONE
        return Outcome.after(max(MIN_WAKE, (wake - self.now()).total_seconds()))

    async def _slot(self, workflow: Body, slot: datetime, policy: ConcurrencyPolicy) -> None:
        key = Key.of(workflow)
        # One name per slot: a slot started before (a crash, a retried pass) is not
        # started again, and its policy is not applied again either.
        suffix = hashlib.sha256(f"{workflow['metadata']['uid']}/{slot}".encode()).hexdigest()[:5]
        name = run_name(key.name, slot, suffix)
        if Key("WorkflowRun", key.namespace, name) in self.index.runs:
            return
        # Runs not admitted yet (just created, queued) count as active too.
        active = self.index.in_states(
            key.namespace, key.name, None, RunState.QUEUED, *ACTIVE_STATES
        )
        if active and policy is ConcurrencyPolicy.FORBID:
            await self.triggers.count_ignored(key)
            return
        try:
            created = await self.triggers.start_run(
                workflow,
                {"type": "schedule", "scheduledTime": slot.isoformat()},
                trigger="schedule",
                name=name,
            )
        except InputRefused as exc:
            self.status.events.post(workflow, "Warning", "InputRefused", f"schedule: {exc}")
            return
        if created is not None and policy is ConcurrencyPolicy.REPLACE:
            for run in active:
                await self.api.patch_spec(
                    "WorkflowRun", run.namespace, run.name, {"spec": {"cancel": True}}
                )
