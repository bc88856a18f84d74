"""Dagster's default run launcher, plus the worker health check that run monitoring needs.

The default launcher cannot say whether a run's worker is alive, so even with run monitoring on, a run
whose code server died with it (a killed `dagster dev`, an OOM kill, a reboot) stays STARTED forever,
and the spool sensor, which never starts a run while one is in flight, stalls ingestion for good.
This launcher asks the code server that started the run whether it still executes it: "no" fails the
run at the monitor's next poll; a server unreachable for `unreachable_grace_seconds` (measured on
this process's monotonic clock, so a slow or restarting server is not mistaken for a dead one) too.
Configured in dagster.yaml (`run_launcher`), with `run_monitoring` enabled.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import dagster as dg
from dagster._core.errors import DagsterUserCodeUnreachableError
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
from dagster._serdes import deserialize_value

GRPC_TIMEOUT_S = 15


class WorkerCheckingRunLauncher(dg.DefaultRunLauncher):
    def __init__(self, inst_data: Any = None, unreachable_grace_seconds: float = 60.0):
        super().__init__(inst_data=inst_data)
        self._grace_s = unreachable_grace_seconds
        self._unreachable_since: dict[str, float] = {}

    @classmethod
    def config_type(cls) -> dict:
        return {"unreachable_grace_seconds": dg.Field(float, is_required=False, default_value=60.0)}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> "WorkerCheckingRunLauncher":
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: dg.DagsterRun) -> CheckRunHealthResult:
        client = self._get_grpc_client_for_termination(run.run_id)
        if client is None:  # finished meanwhile, or not launched through a code server: nothing to judge
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no code server recorded for this run")
        try:
            reply = client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), timeout=GRPC_TIMEOUT_S)
        except DagsterUserCodeUnreachableError:
            now = time.monotonic()
            unreachable_s = now - self._unreachable_since.setdefault(run.run_id, now)
            if unreachable_s < self._grace_s:
                return CheckRunHealthResult(
                    WorkerStatus.RUNNING, f"code server unreachable for {unreachable_s:.0f} s", transient=True
                )
            self._unreachable_since.pop(run.run_id, None)
            return CheckRunHealthResult(
                WorkerStatus.FAILED,
                f"the code server that started this run has been unreachable for {unreachable_s:.0f} s",
            )
        self._unreachable_since.pop(run.run_id, None)
        if deserialize_value(reply, CanCancelExecutionResult).can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        return CheckRunHealthResult(WorkerStatus.FAILED, "the code server that started this run no longer executes it")
