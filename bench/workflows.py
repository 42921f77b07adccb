"""Workflow benchmark: webhook → run, step transitions, runs/min and the RSS of waiting runs.

Run by hand against the local control plane (``hack/control-plane.sh up``, CRDs applied)::

    .venv/bin/python bench/workflows.py [--runs 1000] [--concurrency 32]

Everything happens in one run, so the figures are ratios against a baseline measured on the
same (noisy) machine a minute earlier:

1. baseline: WorkflowRuns in a namespace no controller watches — N creates, N status merge
   patches (a completed three-step run's status), N x (create + one status patch: the least
   a run can cost), and single creates / patches one at a time (the floor of one write);
2. webhook: sequential POSTs to an active workflow's trigger URL on the idle controller; the
   202 comes once the WorkflowRun exists (confirmed by a GET); each run is awaited before
   the next POST;
3. step transitions: from those runs' status (three ``sleep: 0`` steps), the gap between one
   step's ``finishedAt`` and the next one's;
4. throughput: N runs of the three-step workflow created directly (at the given concurrency),
   timed from the first create until all are completed;
5. RSS of the controller (``VmRSS``) with no waiting run (after a warm-up), with N finished
   runs, then with N runs waiting for a hook;
6. resume: a POST to each waiting run's hook URL must be answered 200 and finish the run;
7. fan-out: one run of a forEach step over 1,000 items — time to complete, writes to the run
   per item, the run object's largest size.

With ``BENCH_PROFILE=<file>`` (and py-spy on PATH or in ``$PY_SPY``) the controller is
sampled during phase 4, collapsed stacks written to the file.

It prints Markdown tables and writes ``bench/results/workflows-<timestamp>.json``. It never
fails on timing: the exit status is non-zero only when something is broken (runs never
finish, the controller died, the API server or the webhook refused a request).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

# The shared harness (this file runs as a script: bench/ is on sys.path).
from harness import (
    GROUP,
    ROOT,
    VERSION,
    BenchError,
    Controller,
    CpuMeter,
    Credentials,
    Kube,
    MetricKey,
    Watch,
    add_common_arguments,
    bench_main,
    control_plane_pids,
    create_namespace,
    drop_namespace,
    median,
    metric_delta,
    now_iso,
    percentile,
    proc_status_kib,
    run_pool,
    scrape_requests,
)

THREE = "three"  # three `sleep: 0` steps
HOLD = "hold"  # one hook step: waits forever
FAN = "fan"  # one `sleep: 0` step over 1,000 items (forEach), 50 at a time
FAN_ITEMS = 1000
FAN_CONCURRENCY = 50
STEP_NAMES = ("a", "b", "c")
KEEP_RUNS = 100_000  # successfulRunsLimit / failedRunsLimit: keep every finished run

ACTIVATE_TIMEOUT = 90.0  # controller start + activation of the workflows
SINGLE_RUN_TIMEOUT = 30.0  # one run on an idle controller
WATCH_RESTARTS = 5
FINAL_STATES = ("completed", "failed", "cancelled", "terminated")
WARMUP_RUNS = 20

# Targets (the issue's): both latencies p50 ≤ 30 ms, ≥ 3,000 runs/min; "1,000 waiting runs
# cost only a few MiB", read as ≤ 5 MiB.
TARGET_LATENCY_MS = 30.0
TARGET_RUNS_PER_MIN = 3000.0
TARGET_WAITING_MIB = 5.0

# (group, resource) the workflow engine touches for a run.
ENGINE_RESOURCES = {
    (GROUP, "workflowruns"),
    (GROUP, "workflows"),
    ("", "secrets"),
    ("", "events"),
    ("events.k8s.io", "events"),
}
WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


# -- small helpers ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def parse_time(value: Any) -> float | None:
    """An RFC 3339 time from a status as epoch seconds (None when absent or unparsable)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def stats_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": median(values),
        "p99": percentile(values, 99),
        "max": max(values) if values else math.nan,
    }


def ms(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f} ms"


def num(value: float, digits: int = 0) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(value: float, base: float) -> float:
    return value / base if base and not math.isnan(value) and not math.isnan(base) else math.nan


def markdown_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        padded = (
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        )
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(
        "-" * (w + 1) + ":" if i in right else "-" * (w + 2) for i, w in enumerate(widths)
    )
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def runs_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def workflows_path(namespace: str, name: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflows"
    return f"{path}/{name}" if name else path


def workflow_manifest(name: str, steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {
            "state": "Active",
            "trigger": {"webhook": {}},
            "steps": steps,
            "successfulRunsLimit": KEEP_RUNS,
            "failedRunsLimit": KEEP_RUNS,
        },
    }


def three_steps() -> list[dict[str, Any]]:
    return [{"name": n, "uses": {"type": "sleep"}, "with": {"seconds": 0}} for n in STEP_NAMES]


def fan_steps() -> list[dict[str, Any]]:
    return [
        {
            "name": "each",
            "forEach": "${{ event.items }}",
            "maxConcurrency": FAN_CONCURRENCY,
            "uses": {"type": "sleep"},
            "with": {"seconds": 0},
        }
    ]


def hold_steps() -> list[dict[str, Any]]:
    token = '${{ "wait:" + run.name }}'
    return [{"name": "h", "uses": {"type": "hook"}, "with": {"token": token}}]


def run_manifest(name: str, workflow: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": workflow}, "input": {}},
    }


def completed_status() -> dict[str, Any]:
    """A completed three-step run's status, of the shape (and about the size) the engine
    writes: every field of the model, nulls included."""
    stamp = now_iso()
    conditions = [
        {
            "type": kind,
            "status": status,
            "reason": "Completed",
            "message": "run completed",
            "lastTransitionTime": stamp,
            "observedGeneration": 1,
        }
        for kind, status in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"))
    ]
    steps = [
        {
            "name": name,
            "state": "completed",
            "attempts": 1,
            "uniqueExecutionId": secrets.token_hex(16),
            "outcome": {"id": "done", "data": {"sleptUntil": stamp}},
            "error": None,
            "startedAt": stamp,
            "finishedAt": stamp,
            "wakeAt": None,
            "callbackTokenHash": None,
            "hookTokenHash": None,
            "received": [],
        }
        for name in STEP_NAMES
    ]
    return {
        "status": {
            "state": "completed",
            "observedGeneration": None,
            "conditions": conditions,
            "workflowVersion": 1,
            "startedAt": stamp,
            "finishedAt": stamp,
            "steps": steps,
            "output": None,
            "error": None,
            "accounted": ["started", "finished"],
        }
    }


def other_controllers(own: set[int]) -> list[str]:
    """Other ``blockflow controller`` processes on this machine (they would compete)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in own:
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv if a]
        module = "-m" in words and words.count("controller") >= 2
        script = bool(words) and Path(words[0]).name == "blockflow" and words[1:2] == ["controller"]
        if module or script:
            found.append(f"pid {proc.name}: {' '.join(words)}")
    return found


def source_fingerprint() -> dict[str, Any]:
    """Which controller code ran (the checkout changes under a long benchmark): a digest of
    controller/**/*.py and the newest modification time."""
    digest = hashlib.sha256()
    newest = 0.0
    for path in sorted((ROOT / "controller").rglob("*.py")):
        with contextlib.suppress(OSError):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
            newest = max(newest, path.stat().st_mtime)
    return {
        "sha256": digest.hexdigest()[:16],
        "newest_mtime": datetime.fromtimestamp(newest, UTC).isoformat(timespec="seconds"),
    }


METRIC_LINE = re.compile(r"^(\w+)(?:\{(.*)\})?\s+(\S+)$")
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, prefix: str = "blockflow_") -> dict[str, float]:
    """``name{k="v",...} value`` lines of the controller's own series."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if not match or not match.group(1).startswith(prefix):
            continue
        labels = ",".join(f"{k}={v}" for k, v in LABEL.findall(match.group(2) or ""))
        key = match.group(1) + (f"{{{labels}}}" if labels else "")
        with contextlib.suppress(ValueError):
            values[key] = float(match.group(3))
    return values


# -- watching runs ---------------------------------------------------------------------------


def start_profiler(pid: int) -> subprocess.Popen[bytes] | None:
    """With BENCH_PROFILE=<file>, py-spy samples the controller during the throughput phase
    (collapsed stacks; py-spy from $PY_SPY or PATH, not a project dependency)."""
    out = os.environ.get("BENCH_PROFILE")
    if not out:
        return None
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if spy is None:
        raise BenchError("BENCH_PROFILE is set but py-spy is not found ($PY_SPY or PATH)")
    command = [spy, "record", "-p", str(pid), "-o", out, "--format", "raw", "-r", "200"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_profiler(profiler: subprocess.Popen[bytes] | None) -> None:
    if profiler is not None:
        profiler.send_signal(signal.SIGINT)
        profiler.wait(timeout=60)
        print(f"profile written to {os.environ.get('BENCH_PROFILE')}", flush=True)


@dataclass
class RunTrack:
    """What the benchmark saw of one run (perf_counter seconds)."""

    sent: float | None = None  # create / POST sent
    answered: float | None = None  # create / POST answered
    added: float | None = None  # ADDED seen on the watch
    waiting: float | None = None  # state waiting seen
    done: float | None = None  # a final state seen
    settled: float | None = None  # "finished" in status.accounted seen: the engine is done
    state: str | None = None
    modified: int = 0  # MODIFIED events: writes to the run
    final_bytes: int = 0  # size of the run object at its final state
    max_bytes: int = 0  # the largest version of the run object seen
    stamps: dict[str, Any] | None = None  # status times at the final state (epoch seconds)

    def is_done(self) -> bool:
        return self.done is not None


def group_of(name: str) -> str:
    """warm-000 → warm, tp-00001 → tp, three-20260101-…-abcde (webhook runs) → three."""
    return name.split("-", 1)[0]


class WorkflowWatch(Watch):
    """Counts the writes to each Workflow of a namespace (watch MODIFIED): the successful
    ones only, but namespace-scoped, unlike the API server's metrics."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(kube, workflows_path(namespace))
        self.modified: dict[str, int] = defaultdict(int)

    def _seen(self, obj: dict[str, Any], kind: str | None, size: int) -> None:
        if kind == "MODIFIED":
            self.modified[obj["metadata"]["name"]] += 1


class RunWatch(Watch):
    """The WorkflowRuns of a namespace: each run's progress, states counted per name group."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(kube, runs_path(namespace))
        self.tracks: dict[str, RunTrack] = {}
        self.done: dict[str, int] = defaultdict(int)
        self.waiting: dict[str, int] = defaultdict(int)
        self.settled: dict[str, int] = defaultdict(int)
        self.states: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def track(self, name: str) -> RunTrack:
        found = self.tracks.get(name)
        if found is None:
            found = self.tracks[name] = RunTrack()
        return found

    def _seen(self, obj: dict[str, Any], kind: str | None, size: int) -> None:
        at = time.perf_counter()
        name = obj["metadata"]["name"]
        group = group_of(name)
        track = self.track(name)
        track.max_bytes = max(track.max_bytes, size)
        if kind == "ADDED" and track.added is None:
            track.added = at
        elif kind == "MODIFIED":
            track.modified += 1
        status = obj.get("status") or {}
        state = status.get("state")
        if state == "waiting" and track.waiting is None:
            track.waiting = at
            self.waiting[group] += 1
        if state in FINAL_STATES and track.done is None:
            track.done, track.state, track.final_bytes = at, state, size
            track.stamps = run_stamps(status)
            self.done[group] += 1
            self.states[group][state] += 1
        if track.settled is None and "finished" in (status.get("accounted") or []):
            track.settled = at
            self.settled[group] += 1


def run_stamps(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "started": parse_time(status.get("startedAt")),
        "finished": parse_time(status.get("finishedAt")),
        "steps": [
            (r.get("name"), parse_time(r.get("startedAt")), parse_time(r.get("finishedAt")))
            for r in status.get("steps") or []
        ],
    }


def transitions(tracks: Iterable[RunTrack]) -> dict[str, list[float]]:
    """Milliseconds between the status times of consecutive steps, over completed runs.

    ``a.finishedAt → b.finishedAt`` is one step transition (the target's figure); it splits
    into ``a.finishedAt → b.startedAt`` (the engine records a's reply and plans b) and
    ``b.startedAt → b.finishedAt`` (it writes "b running", then calls b: a no-op)."""
    out: dict[str, list[float]] = defaultdict(list)
    for track in tracks:
        stamps = track.stamps
        if track.state != "completed" or not stamps:
            continue
        steps = stamps["steps"]
        if len(steps) != len(STEP_NAMES) or any(s is None or f is None for _, s, f in steps):
            continue
        started, finished = stamps["started"], stamps["finished"]
        if started is not None:
            out["admit_to_first_step"].append((steps[0][1] - started) * 1000)
        for (_, _, prev_end), (_, start, end) in itertools.pairwise(steps):
            out["transition"].append((end - prev_end) * 1000)
            out["record_and_plan"].append((start - prev_end) * 1000)
            out["begin_and_call"].append((end - start) * 1000)
        if finished is not None:
            out["last_step_to_finished"].append((finished - steps[-1][2]) * 1000)
            if started is not None:
                out["run_started_to_finished"].append((finished - started) * 1000)
    return dict(out)


# -- the controller process ------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: SIGTERM when the benchmark dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class WorkflowController(Controller):
    """``python -m controller controller -n <ns> --log-format json`` with its HTTP server on a free
    port and a throw-away token key (nothing is written outside the namespace)."""

    def __init__(self, creds: Credentials, namespace: str, log_path: Path, port: int) -> None:
        super().__init__(creds, namespace, log_path)
        self.port = port
        self.token_key = secrets.token_urlsafe(32)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.creds.kubeconfig)}
        for name in ("BLOCKFLOW_NAMESPACES", "BLOCKFLOW_PUBLIC_URL"):
            env.pop(name, None)
        env.update(
            BLOCKFLOW_HTTP_HOST="127.0.0.1",
            BLOCKFLOW_HTTP_PORT=str(self.port),
            BLOCKFLOW_TOKEN_KEY=self.token_key,
        )
        with self.log_path.open("wb") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controller",
                "controller",
                "-n",
                self.namespace,
                "--log-format",
                "json",
                cwd=ROOT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def rss_mib(self) -> float:
        return (proc_status_kib(self.pid, "VmRSS") or 0) / 1024

    def hwm_mib(self) -> float:
        return (proc_status_kib(self.pid, "VmHWM") or 0) / 1024

    def warnings(self, top: int = 8) -> list[tuple[str, int]]:
        """The most frequent warning/error messages of the JSON log."""
        counts: dict[str, int] = defaultdict(int)
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(record, dict):
                continue
            if str(record.get("level", "")).lower() not in ("warning", "error", "critical"):
                continue
            text = str(record.get("event") or record.get("message") or "?")
            detail = record.get("code") or record.get("error") or ""
            counts[f"{record.get('level')}: {text} {str(detail)[:80]}".strip()] += 1
        return sorted(counts.items(), key=lambda kv: -kv[1])[:top]


# -- the benchmark ---------------------------------------------------------------------------


@dataclass
class Bench:
    kube: Kube
    creds: Credentials
    runs: int
    concurrency: int
    samples: int
    results: dict[str, Any]
    namespaces: list[str] = field(default_factory=list)
    controller: WorkflowController | None = None
    watch: RunWatch | None = None
    wf_watch: WorkflowWatch | None = None
    http: aiohttp.ClientSession | None = None
    webhook_url: str = ""

    @property
    def timeout(self) -> float:
        """Generous: all runs done within this many seconds, else something is broken."""
        return 120.0 + self.runs * 0.5

    # -- phase 1: baseline ---------------------------------------------------------------

    async def baseline(self, namespace: str) -> None:
        print(f"phase 1: baseline in {namespace} (no controller watches it)", flush=True)
        await create_namespace(self.kube, namespace)
        self.namespaces.append(namespace)
        n, c = self.runs, self.concurrency
        names = [f"floor-{i:05d}" for i in range(n)]
        pairs = [f"pair-{i:05d}" for i in range(n)]
        status_bytes = len(json.dumps(completed_status(), separators=(",", ":")))

        async def create(i: int) -> None:
            await self.kube.request("POST", runs_path(namespace), run_manifest(names[i], THREE))

        async def patch(i: int, name: str | None = None) -> None:
            await self.kube.request(
                "PATCH",
                runs_path(namespace, name or names[i], "status"),
                completed_status(),
                content_type="application/merge-patch+json",
            )

        async def pair(i: int) -> None:
            await self.kube.request("POST", runs_path(namespace), run_manifest(pairs[i], THREE))
            await patch(i, pairs[i])

        pids = control_plane_pids(self.creds.server)
        create_s = await run_pool(n, c, create)
        meter = CpuMeter(pids)
        meter.start()
        patch_s = await run_pool(n, c, patch)
        patch_cpu = meter.stop()
        pair_s = await run_pool(n, c, pair)
        # One at a time: the latency of one write on an idle server.
        sequential = min(n, 100)
        create_ms: list[float] = []
        patch_ms: list[float] = []
        for i in range(sequential):
            t0 = time.perf_counter()
            await self.kube.request(
                "POST", runs_path(namespace), run_manifest(f"seq-{i:05d}", THREE)
            )
            create_ms.append((time.perf_counter() - t0) * 1000)
        for i in range(sequential):
            t0 = time.perf_counter()
            await patch(i)
            patch_ms.append((time.perf_counter() - t0) * 1000)
        # A Blockflow controller watching this namespace (a cluster-wide one) would fail a run
        # of a workflow that does not exist here within moments.
        await self.kube.request("POST", runs_path(namespace), run_manifest("probe", "absent"))
        await asyncio.sleep(2.0)
        probe = await self.kube.get_json(runs_path(namespace, "probe"))
        foreign = (probe.get("status") or {}).get("state")
        self.results["baseline"] = {
            "namespace": namespace,
            "create_s": create_s,
            "creates_per_s": n / create_s,
            "status_patch_s": patch_s,
            "status_patches_per_s": n / patch_s,
            "status_patch_bytes": status_bytes,
            "create_plus_patch_s": pair_s,
            "floor_runs_per_min": n / pair_s * 60,
            "create_latency_c1_ms": stats_ms(create_ms),
            "patch_latency_c1_ms": stats_ms(patch_ms),
            "cpu_status_patches": patch_cpu,
            "probe_state_written_by_another_controller": foreign,
        }
        if foreign:
            self.results["interference"].append(
                f"another Blockflow controller wrote state {foreign!r} to a run in the baseline "
                "namespace: a cluster-wide controller is running and competes for the API server "
                "(and processes the benchmark's runs too)"
            )
        print(
            f"  {n} creates {n / create_s:.0f}/s, {n} status patches {n / patch_s:.0f}/s, "
            f"create + patch {n / pair_s * 60:.0f} runs/min; one at a time: create p50 "
            f"{median(create_ms):.1f} ms, patch p50 {median(patch_ms):.1f} ms",
            flush=True,
        )

    # -- controller start ----------------------------------------------------------------

    async def start_controller(self, namespace: str, log_path: Path) -> None:
        print(f"phase 2: controller on {namespace}", flush=True)
        await create_namespace(self.kube, namespace)
        self.namespaces.append(namespace)
        for name, steps in ((THREE, three_steps()), (HOLD, hold_steps()), (FAN, fan_steps())):
            await self.kube.request(
                "POST", workflows_path(namespace), workflow_manifest(name, steps)
            )
        self.controller = WorkflowController(self.creds, namespace, log_path, free_port())
        self.results["controller_source"] = source_fingerprint()
        started = time.perf_counter()
        await self.controller.start()
        deadline = started + ACTIVATE_TIMEOUT
        for name in (THREE, HOLD, FAN):
            while True:
                body = await self.kube.get_json(workflows_path(namespace, name))
                status = body.get("status") or {}
                if (
                    status.get("phase") == "Activated"
                    and (status.get("lifecycle") or {}).get("status") == "ready"
                ):
                    break
                self.controller.check_alive()
                if time.perf_counter() > deadline:
                    raise BenchError(
                        f"Workflow {name} not activated within {ACTIVATE_TIMEOUT:.0f}s "
                        f"(status {json.dumps(status)[:300]})"
                    )
                await asyncio.sleep(0.1)
        activated_s = time.perf_counter() - started
        self.webhook_url = await self._webhook_url(namespace, THREE, deadline)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        await self.controller.wait_quiet()
        self.results["controller_start"] = {
            "namespace": namespace,
            "activated_s": activated_s,
            "pid": self.controller.pid,
            "port": self.controller.port,
            "idle_rss_mib": self.controller.rss_mib(),
        }
        print(f"  controller up, workflows activated after {activated_s:.2f}s", flush=True)
        self.watch = RunWatch(self.kube, namespace)
        await self.watch.start()
        self.wf_watch = WorkflowWatch(self.kube, namespace)
        await self.wf_watch.start()

    async def _webhook_url(self, namespace: str, workflow: str, deadline: float) -> str:
        """The trigger URL from Secret <workflow>-workflow-signals, checked against the one
        this benchmark's controller derives (another controller reconciling the namespace
        would have written its own)."""
        from controller.server.tokens import derived_token

        assert self.controller is not None
        body = await self.kube.get_json(workflows_path(namespace, workflow))
        token = derived_token(
            self.controller.token_key.encode(), f"webhook:{body['metadata']['uid']}"
        )
        expected = f"{self.controller.base_url}/triggers/{token}"
        path = f"/api/v1/namespaces/{namespace}/secrets/{workflow}-workflow-signals"
        while True:
            with contextlib.suppress(BenchError):
                secret = await self.kube.get_json(path)
                value = (secret.get("data") or {}).get("triggerCallbackUrl")
                if value:
                    url = base64.b64decode(value).decode()
                    if url != expected:
                        self.results["interference"].append(
                            f"Secret {workflow}-workflow-signals names a trigger URL on "
                            f"{url.split('/triggers/')[0]}, not this benchmark's controller "
                            f"({self.controller.base_url}): another Blockflow controller "
                            "reconciles the namespace; the benchmark posts to its own"
                        )
                    return expected
            self.controller.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"no triggerCallbackUrl in Secret {workflow}-workflow-signals")
            await asyncio.sleep(0.1)

    async def metrics(self) -> dict[str, float]:
        assert self.http is not None and self.controller is not None
        async with self.http.get(self.controller.base_url + "/metrics") as resp:
            if resp.status != 200:
                raise BenchError(f"GET /metrics: HTTP {resp.status}")
            return parse_metrics(await resp.text())

    async def create_runs(
        self, names: list[str], workflow: str, concurrency: int | None = None
    ) -> float:
        assert self.watch is not None and self.controller is not None
        watch, namespace = self.watch, self.controller.namespace

        async def create(i: int) -> None:
            track = watch.track(names[i])
            track.sent = time.perf_counter()
            await self.kube.request("POST", runs_path(namespace), run_manifest(names[i], workflow))
            track.answered = time.perf_counter()

        return await run_pool(len(names), concurrency or self.concurrency, create)

    async def background_check(self, controller: WorkflowController) -> None:
        """Requests on the engine's resources while this controller is idle: other clients
        (tests, other controllers) that the API server's metrics will not tell apart."""
        await controller.wait_quiet()
        window = 3.0
        before = await scrape_requests(self.kube)
        await asyncio.sleep(window)
        after = await scrape_requests(self.kube)
        busy = sum(
            count
            for (verb, group, resource, _, _), count in metric_delta(before, after).items()
            if (group, resource) in ENGINE_RESOURCES and verb != "WATCH"
        )
        self.results["background_requests_per_s"] = busy / window
        if busy > 0:
            self.results["interference"].append(
                f"{busy / window:.0f} requests/s on workflows, runs, events or secrets while the "
                "benchmark's controller was idle: other clients are busy; the metric counts "
                "below include their requests (the namespace-scoped counts do not)"
            )

    async def state_histogram(self, group: str) -> dict[str, int]:
        """status.state of a group's runs as the API server has them (for error messages)."""
        assert self.controller is not None
        listing = await self.kube.get_json(runs_path(self.controller.namespace))
        counts: dict[str, int] = defaultdict(int)
        for obj in listing.get("items") or []:
            if group_of(obj["metadata"]["name"]) == group:
                counts[str((obj.get("status") or {}).get("state"))] += 1
        return dict(counts)

    async def rss_point(self, label: str) -> dict[str, Any]:
        """The controller's RSS once it is idle again (and its own view of the runs)."""
        assert self.controller is not None
        settled = await self.controller.wait_quiet()
        # The controller returns free memory to the OS ~3 s after a burst (gc + malloc_trim,
        # controller/runtime/memory.py): sample after that; VmHWM keeps the burst's peak.
        await asyncio.sleep(5.0)
        point = {
            "label": label,
            "vmrss_mib": self.controller.rss_mib(),
            "vmhwm_mib": self.controller.hwm_mib(),
            "settled": settled,
            "runs_gauge": {
                k.split("state=", 1)[1].rstrip("}"): v
                for k, v in (await self.metrics()).items()
                if k.startswith("blockflow_runs{state=")
            },
        }
        self.results.setdefault("rss", []).append(point)
        print(f"  RSS {label}: {point['vmrss_mib']:.1f} MiB", flush=True)
        return point

    # -- warm-up, then RSS with nothing waiting ------------------------------------------

    async def warm_up(self) -> None:
        """Runs at full concurrency before the zero point, so that what any burst brings for
        good — the connection pools' TLS sessions and buffers, caches, compiled CEL — is in
        the baseline and the waiting runs' RSS is theirs alone."""
        assert self.watch is not None and self.controller is not None
        watch = self.watch
        count = max(WARMUP_RUNS, self.runs // 5)
        print(f"  warm-up: {count} runs of {THREE} at concurrency {self.concurrency}", flush=True)
        names = [f"warm-{i:05d}" for i in range(count)]
        await self.create_runs(names, THREE)
        if not await watch.wait_until(lambda: watch.settled["warm"] >= count, 120):
            self.controller.check_alive()
            raise BenchError(f"warm-up runs not finished within 120s: {dict(watch.states['warm'])}")
        await self.rss_point(f"0 waiting (after {count} warm-up runs)")

    # -- phase 2 + 3: webhook latency and step transitions ---------------------------------

    async def webhook_latency(self) -> None:
        assert self.watch is not None and self.controller is not None and self.http is not None
        watch, controller, http = self.watch, self.controller, self.http
        namespace = controller.namespace
        print(
            f"phase 2+3: {self.samples} sequential webhook POSTs on the idle controller", flush=True
        )
        meter = CpuMeter({"controller": controller.pid})
        meter.start()
        post_ms: list[float] = []
        confirm_ms: list[float] = []
        tracks: list[RunTrack] = []
        missing: list[str] = []
        rate_limited = 0
        for i in range(self.samples):
            while True:
                t0 = time.perf_counter()
                async with http.post(self.webhook_url, json={"sample": i}) as resp:
                    payload = await resp.read()
                    t1 = time.perf_counter()
                    code, retry_after = resp.status, resp.headers.get("Retry-After", "1")
                if code != 429:
                    break
                rate_limited += 1
                await asyncio.sleep(float(retry_after))
            if code != 202:
                raise BenchError(f"webhook POST: HTTP {code}: {payload[:300]!r}")
            name = str(json.loads(payload).get("run") or "")
            if not name:
                raise BenchError(f"webhook POST answered without a run name: {payload[:300]!r}")
            track = watch.track(name)
            track.sent, track.answered = t0, t1
            post_ms.append((t1 - t0) * 1000)
            try:
                await self.kube.get_json(runs_path(namespace, name))
                confirm_ms.append((time.perf_counter() - t0) * 1000)
            except BenchError:
                missing.append(name)  # 202 before the run exists: a controller bug
            if not await watch.wait_until(track.is_done, SINGLE_RUN_TIMEOUT):
                controller.check_alive()
                raise BenchError(f"run {name} not finished within {SINGLE_RUN_TIMEOUT:.0f}s")
            tracks.append(track)
            await asyncio.sleep(0.05)  # stay idle between samples
        cpu = meter.stop()
        to_done = [(t.done - t.sent) * 1000 for t in tracks if t.done and t.sent]
        to_added = [(t.added - t.sent) * 1000 for t in tracks if t.added and t.sent]
        gaps = transitions(tracks)
        self.results["webhook"] = {
            "n": len(post_ms),
            "post_ms": stats_ms(post_ms),
            "post_and_get_ms": stats_ms(confirm_ms),
            "post_to_watch_added_ms": stats_ms(to_added),
            "post_to_completed_seen_ms": stats_ms(to_done),
            "missing_after_202": missing,
            "rate_limited_429": rate_limited,
            "states": dict(watch.states[THREE]),
            "controller_cpu_ms_per_run": cpu["controller"]["cpu_s"] * 1000 / max(1, len(tracks)),
        }
        self.results["steps"] = {
            "idle": {k: stats_ms(v) for k, v in gaps.items()},
            "writes_to_run_per_run": sum(t.modified for t in tracks) / max(1, len(tracks)),
            "final_object_bytes_p50": median(t.final_bytes for t in tracks),
        }
        print(
            f"  POST → 202 p50 {median(post_ms):.1f} ms; step transition p50 "
            f"{median(gaps.get('transition', [])):.1f} ms",
            flush=True,
        )

    # -- phase 4: throughput -------------------------------------------------------------

    async def throughput(self) -> None:
        assert self.watch is not None and self.controller is not None
        watch, controller = self.watch, self.controller
        n = self.runs
        print(
            f"phase 4: {n} runs of {THREE}, created at concurrency {self.concurrency}", flush=True
        )
        names = [f"tp-{i:05d}" for i in range(n)]
        await self.background_check(controller)
        assert self.wf_watch is not None
        wf_writes_before = self.wf_watch.modified[THREE]
        pids = {**control_plane_pids(self.creds.server), "controller": controller.pid}
        meter = CpuMeter(pids)
        before = await scrape_requests(self.kube)
        wf_before = await self.kube.get_json(workflows_path(controller.namespace, THREE))
        controller.start_sampling()
        meter.start()
        profiler = start_profiler(controller.pid)
        started = time.perf_counter()
        create_s = await self.create_runs(names, THREE)
        all_done = await watch.wait_until(lambda: watch.done["tp"] >= n, self.timeout)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        stop_profiler(profiler)
        if not all_done:
            controller.check_alive()
            raise BenchError(
                f"{n - watch.done['tp']} of {n} runs not finished after {self.timeout:.0f}s "
                f"(states in the API server: {await self.state_histogram('tp')})"
            )
        all_settled = await watch.wait_until(lambda: watch.settled["tp"] >= n, 60)
        settled_s = time.perf_counter() - started
        point = await self.rss_point(f"{n:,} finished (+ the waiting ones)")
        await controller.stop_sampling()
        after = await scrape_requests(self.kube)
        wf_after = await self.kube.get_json(workflows_path(controller.namespace, THREE))
        wf_writes = self.wf_watch.modified[THREE] - wf_writes_before
        events = await self.kube.get_json(f"/api/v1/namespaces/{controller.namespace}/events")
        by_reason: dict[str, int] = defaultdict(int)
        for event in events.get("items") or []:
            involved = event.get("involvedObject") or {}
            if (
                involved.get("kind") == "WorkflowRun"
                and group_of(str(involved.get("name"))) == "tp"
            ):
                by_reason[str(event.get("reason"))] += int(event.get("count") or 1)
        tracks = [watch.tracks[name] for name in names]
        done_times = sorted(t.done - started for t in tracks if t.done)
        under_load = [(t.done - t.sent) * 1000 for t in tracks if t.done and t.sent]
        counters = {}
        for key in ("runCount", "successCount", "failureCount"):
            counters[key] = int((wf_after.get("status") or {}).get(key) or 0) - int(
                (wf_before.get("status") or {}).get(key) or 0
            )
        modified = [t.modified for t in tracks]
        self.results["throughput"] = {
            "n": n,
            "create_s": create_s,
            "elapsed_s": elapsed,
            "runs_per_min": n / elapsed * 60,
            "ratio_to_floor": ratio(
                n / elapsed * 60, self.results["baseline"]["floor_runs_per_min"]
            ),
            "states": dict(watch.states["tp"]),
            "all_settled": all_settled,
            "settled_s": settled_s,
            "done_after_s": {
                "first": done_times[0],
                "half": done_times[len(done_times) // 2],
                "last": done_times[-1],
            },
            "create_to_done_ms": stats_ms(under_load),
            "steps_under_load": {k: stats_ms(v) for k, v in transitions(tracks).items()},
            "writes_to_run_per_run": sum(modified) / n,
            "writes_to_run_histogram": {str(k): modified.count(k) for k in sorted(set(modified))},
            "writes_to_workflow_per_run": wf_writes / n,
            "events_per_run": sum(by_reason.values()) / n,
            "events_by_reason": dict(by_reason),
            "workflow_counters_delta": counters,
            "workflow_phase_after": (wf_after.get("status") or {}).get("phase"),
            "cpu": cpu,
            "controller_cpu_ms_per_run": cpu.get("controller", {}).get("cpu_s", 0) * 1000 / n,
            "peak_rss_mib": max(controller.rss_max_kib / 1024, point["vmhwm_mib"]),
            "benchmark_retries": self.kube.retries,
        }
        self.results["api"] = attribute_requests(metric_delta(before, after), n)
        print(
            f"  {n} runs completed in {elapsed:.2f}s ({n / elapsed * 60:.0f} runs/min)", flush=True
        )

    # -- phase 7: a fan-out of 1,000 items -----------------------------------------------

    async def fan_out(self) -> None:
        """One run of a forEach step over FAN_ITEMS items on the idle controller: the time
        to complete, the writes to the run per item, and the run object's largest size."""
        assert self.watch is not None and self.controller is not None
        watch, namespace = self.watch, self.controller.namespace
        print(f"phase 7: one run fanning out over {FAN_ITEMS:,} items", flush=True)
        await self.controller.wait_quiet()
        name = "fan-00000"
        body = run_manifest(name, FAN)
        body["spec"]["input"] = {"items": [{"id": f"item-{i:04d}"} for i in range(FAN_ITEMS)]}
        before = await scrape_requests(self.kube)
        started = time.perf_counter()
        await self.kube.request("POST", runs_path(namespace), body)
        done = await watch.wait_until(lambda: watch.done["fan"] >= 1, self.timeout)
        elapsed = time.perf_counter() - started
        if not done:
            self.controller.check_alive()
            raise BenchError(f"the fan-out run did not finish within {self.timeout:.0f}s")
        after = await scrape_requests(self.kube)
        track = watch.tracks[name]
        patches = sum(
            v
            for (verb, _, resource, *_), v in metric_delta(before, after).items()
            if verb == "PATCH" and resource == "workflowruns"
        )
        self.results["fan_out"] = {
            "items": FAN_ITEMS,
            "max_concurrency": FAN_CONCURRENCY,
            "state": track.state,
            "elapsed_s": elapsed,
            "items_per_s": FAN_ITEMS / elapsed,
            "writes_to_run": track.modified,
            "writes_per_item": track.modified / FAN_ITEMS,
            "status_patches": patches,
            "peak_bytes": track.max_bytes,
            "final_bytes": track.final_bytes,
        }
        print(
            f"  {FAN_ITEMS:,} items {track.state} in {elapsed:.2f}s, {track.modified} writes, "
            f"largest version {track.max_bytes / 1024:.0f} KiB",
            flush=True,
        )

    # -- phase 5: waiting runs -----------------------------------------------------------

    async def waiting(self) -> None:
        assert self.watch is not None and self.controller is not None
        watch, controller = self.watch, self.controller
        n = self.runs
        print(f"phase 5: {n} runs of {HOLD} (a hook step: they wait)", flush=True)
        names = [f"wait-{i:05d}" for i in range(n)]
        meter = CpuMeter({"controller": controller.pid})
        meter.start()
        started = time.perf_counter()
        create_s = await self.create_runs(names, HOLD)
        ok = await watch.wait_until(lambda: watch.waiting["wait"] >= n, self.timeout)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        if not ok:
            controller.check_alive()
            raise BenchError(
                f"{n - watch.waiting['wait']} of {n} runs not waiting after {self.timeout:.0f}s "
                f"(states in the API server: {await self.state_histogram('wait')})"
            )
        point = await self.rss_point(f"{n:,} waiting")
        wf = await self.kube.get_json(workflows_path(controller.namespace, HOLD))
        self.results["waiting"] = {
            "n": n,
            "create_s": create_s,
            "elapsed_s": elapsed,
            "runs_per_min": n / elapsed * 60,
            "ended_instead": dict(watch.states["wait"]),
            "controller_cpu_ms_per_run": cpu["controller"]["cpu_s"] * 1000 / n,
            "rss_mib": point["vmrss_mib"],
            "workflow_phase": (wf.get("status") or {}).get("phase"),
            "writes_to_run_per_run": sum(watch.tracks[x].modified for x in names) / n,
        }

    # -- phase 6: resume the waiting runs -----------------------------------------------

    async def resume(self) -> None:
        """POST /hooks/<token> for every waiting run (a waiting run must stay resumable):
        answered 200, or 404 when the controller does not know the run waits."""
        from controller.server.tokens import derived_token

        assert self.watch is not None and self.controller is not None and self.http is not None
        watch, controller, http = self.watch, self.controller, self.http
        n = self.runs
        print(f"phase 6: resume the {n} waiting runs (POST /hooks/<token>)", flush=True)
        names = [f"wait-{i:05d}" for i in range(n)]
        body = await self.kube.get_json(workflows_path(controller.namespace, HOLD))
        hook_key = derived_token(
            controller.token_key.encode(), f"hookkey:{body['metadata']['uid']}"
        )
        headers = {"Authorization": f"Bearer {hook_key}"}
        codes: dict[int, int] = defaultdict(int)
        refused: list[str] = []
        post_ms: list[float] = []

        async def post(i: int) -> None:
            url = f"{controller.base_url}/hooks/wait:{names[i]}"
            t0 = time.perf_counter()
            async with http.post(url, json={"i": i}, headers=headers) as resp:
                await resp.read()
                code = resp.status
            post_ms.append((time.perf_counter() - t0) * 1000)
            codes[code] += 1
            if code != 200:
                refused.append(names[i])

        started = time.perf_counter()
        post_s = await run_pool(n, self.concurrency, post)
        accepted = codes.get(200, 0)
        ok = await watch.wait_until(lambda: watch.done["wait"] >= accepted, self.timeout)
        elapsed = time.perf_counter() - started
        if not ok:
            controller.check_alive()
            raise BenchError(
                f"{accepted - watch.done['wait']} resumed runs not finished after "
                f"{self.timeout:.0f}s (states in the API server: "
                f"{await self.state_histogram('wait')})"
            )
        # What the API server says about the runs the controller refused to resume.
        still: dict[str, int] = defaultdict(int)
        for name in refused[:50]:
            with contextlib.suppress(BenchError):
                obj = await self.kube.get_json(runs_path(controller.namespace, name))
                still[str((obj.get("status") or {}).get("state"))] += 1
        self.results["resume"] = {
            "n": n,
            "codes": {str(k): v for k, v in sorted(codes.items())},
            "post_ms": stats_ms(post_ms),
            "post_s": post_s,
            "elapsed_s": elapsed,
            "finished": dict(watch.states["wait"]),
            "refused_sample": refused[:10],
            "refused_state_in_api_server": dict(still),
        }
        print(
            f"  hooks answered {dict(codes)}; {watch.done['wait']} runs finished in {elapsed:.2f}s",
            flush=True,
        )

    # -- cleanup -------------------------------------------------------------------------

    async def cleanup(self) -> None:
        for watch in (self.watch, self.wf_watch):
            if watch is not None:
                await watch.stop()
        if self.http is not None:
            await self.http.close()
        if self.controller is not None:
            await self.controller.stop()
        for namespace in self.namespaces:
            await drop_namespace(
                self.kube, namespace, ("workflows", "workflowruns"), self.concurrency
            )


def attribute_requests(delta: dict[MetricKey, float], n: int) -> dict[str, Any]:
    """Requests of the throughput phase by verb, resource and code; the benchmark's own
    creates and watch out. The metric has no namespace label: other clients add to it."""
    rows: dict[tuple[str, str, str], float] = defaultdict(float)
    other = 0.0
    for (verb, group, resource, subresource, code), count in delta.items():
        if not resource:
            continue  # /metrics, discovery
        if (group, resource) not in ENGINE_RESOURCES:
            other += count
            continue
        label = resource + (f"/{subresource}" if subresource else "")
        rows[(verb, label, code)] += count
    rows[("POST", "workflowruns", "201")] -= n  # the benchmark's own creates
    table = [
        {"verb": verb, "resource": label, "code": code, "count": count, "per_run": count / n}
        for (verb, label, code), count in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))
        if count > 0 and verb != "WATCH"
    ]
    writes = sum(r["count"] for r in table if r["verb"] in WRITE_VERBS)
    conflicts = sum(r["count"] for r in table if r["code"] == "409")
    return {
        "rows": table,
        "writes_per_run": writes / n,
        "reads_per_run": sum(r["count"] for r in table if r["verb"] in ("GET", "LIST")) / n,
        "conflicts_409": conflicts,
        "unrelated_requests": other,
    }


# -- report ----------------------------------------------------------------------------------


def summary_rows(r: dict[str, Any]) -> tuple[list[list[str]], dict[str, bool]]:
    base, hook, steps, tp = r["baseline"], r["webhook"], r["steps"]["idle"], r["throughput"]
    rss = {p["label"]: p["vmrss_mib"] for p in r["rss"]}
    zero, waiting, finished = (p["vmrss_mib"] for p in r["rss"][:3])
    create1, patch1 = base["create_latency_c1_ms"], base["patch_latency_c1_ms"]
    transition = steps.get("transition", {"p50": math.nan, "p99": math.nan})
    met: dict[str, bool] = {}

    def check(key: str, ok: bool) -> str:
        met[key] = ok
        return "yes" if ok else "NO"

    rows = [
        [
            "1",
            "webhook POST → run exists (202), p50",
            ms(hook["post_ms"]["p50"]),
            f"create {ms(create1['p50'])}",
            f"{ratio(hook['post_ms']['p50'], create1['p50']):.1f}x",
            f"≤ {TARGET_LATENCY_MS:.0f} ms",
            check("webhook", hook["post_ms"]["p50"] <= TARGET_LATENCY_MS),
        ],
        [
            "1",
            "webhook POST → run exists (202), p99",
            ms(hook["post_ms"]["p99"]),
            f"create {ms(create1['p99'])}",
            f"{ratio(hook['post_ms']['p99'], create1['p99']):.1f}x",
            "",
            "",
        ],
        [
            "2",
            "step transition (finishedAt → next finishedAt), p50",
            ms(transition["p50"]),
            f"status PATCH {ms(patch1['p50'])}",
            f"{ratio(transition['p50'], patch1['p50']):.1f}x",
            f"≤ {TARGET_LATENCY_MS:.0f} ms",
            check("transition", transition["p50"] <= TARGET_LATENCY_MS),
        ],
        [
            "2",
            "step transition, p99",
            ms(transition["p99"]),
            f"status PATCH {ms(patch1['p99'])}",
            f"{ratio(transition['p99'], patch1['p99']):.1f}x",
            "",
            "",
        ],
        [
            "3",
            f"throughput, {tp['n']:,} three-step runs",
            f"{num(tp['runs_per_min'])} runs/min",
            f"create + 1 status PATCH {num(base['floor_runs_per_min'])} runs/min",
            f"{tp['ratio_to_floor']:.2f}",
            f"≥ {TARGET_RUNS_PER_MIN:,.0f} runs/min",
            check("throughput", tp["runs_per_min"] >= TARGET_RUNS_PER_MIN),
        ],
        ["4", f"controller RSS, {next(iter(rss))}", f"{zero:.1f} MiB", "", "", "", ""],
        ["4", f"controller RSS, {list(rss)[1]}", f"{waiting:.1f} MiB", "", "", "", ""],
        ["4", f"controller RSS, {list(rss)[2]}", f"{finished:.1f} MiB", "", "", "", ""],
        [
            "4",
            f"Δ RSS {r['waiting']['n']:,} waiting vs 0 waiting",
            f"{waiting - zero:+.1f} MiB",
            "",
            "",
            f"a few MiB (≤ {TARGET_WAITING_MIB:.0f})",
            check("waiting", waiting - zero <= TARGET_WAITING_MIB),
        ],
        [
            "4",
            f"Δ RSS then {tp['n']:,} finished runs (a burst at full concurrency)",
            f"{finished - waiting:+.1f} MiB",
            "",
            "",
            "",
            "",
        ],
        [
            "5",
            "API server alone: WorkflowRun creates / status PATCHes",
            f"{num(base['creates_per_s'])} / {num(base['status_patches_per_s'])} per s",
            f"concurrency {r['concurrency']}",
            "",
            "",
            "",
        ],
    ]
    return rows, met


def notes_for(r: dict[str, Any], met: dict[str, bool]) -> list[str]:
    """What the run measured that explains each missed target (and anything odd)."""
    base, hook, tp, api = r["baseline"], r["webhook"], r["throughput"], r["api"]
    notes: list[str] = []
    idle = r["steps"]["idle"]
    if not met.get("transition", True):

        def p50(key: str) -> str:
            return ms(idle.get(key, {"p50": math.nan})["p50"])

        notes.append(
            f"step transition: record a's reply and plan b (a.finishedAt → b.startedAt) "
            f"{p50('record_and_plan')}, write 'b running' and call b (b.startedAt → "
            f"b.finishedAt) {p50('begin_and_call')}: two sequential status writes per no-op "
            f"step, each ~{ms(base['patch_latency_c1_ms']['p50'])} on the raw API server; "
            f"{r['steps']['writes_to_run_per_run']:.1f} writes to each run in all."
        )
    if not met.get("webhook", True):
        notes.append(
            f"webhook: POST answered p50 {ms(hook['post_ms']['p50'])} where one create takes "
            f"{ms(base['create_latency_c1_ms']['p50'])}."
        )
    if not met.get("throughput", True) or tp["ratio_to_floor"] < 0.5:
        # Namespace-scoped successful writes: the run itself, its Workflow, Events.
        w = tp["writes_to_run_per_run"] + tp["writes_to_workflow_per_run"] + tp["events_per_run"]
        create_rate, patch_rate = base["creates_per_s"], base["status_patches_per_s"]
        ceiling = 60 / (1 / create_rate + w / patch_rate) if w else math.nan
        cpu = tp["cpu"]
        cores = os.cpu_count() or 1
        cells = ", ".join(f"{k} {v['cores']:.2f}" for k, v in sorted(cpu.items()))
        conflicts = sum(
            row["count"]
            for row in api["rows"]
            if row["code"] == "409" and row["resource"] == "workflows/status"
        )
        note = (
            f"throughput: each run costs {w:.1f} successful writes besides its create "
            f"({tp['writes_to_run_per_run']:.1f} to the run, "
            f"{tp['writes_to_workflow_per_run']:.1f} to its Workflow, "
            f"{tp['events_per_run']:.1f} Events) where the floor costs one: even without "
            f"conflicts the API-server-bound ceiling at the baseline's rates is {num(ceiling)} "
            f"runs/min. The metrics add {api['reads_per_run']:.1f} reads per run and "
            f"{conflicts:.0f} 409 conflicts on workflows/status"
            + (
                f" ({conflicts / tp['n']:.1f} per run: the runs' starts and ends are counted by "
                "resourceVersion-checked patches of the one Workflow)"
                if conflicts
                else ""
            )
            + f". CPU cores used: {cells} (of {cores}); the controller spent "
            f"{tp['controller_cpu_ms_per_run']:.1f} ms CPU per run"
        )
        ctl = cpu.get("controller", {}).get("cores", 0.0)
        if ctl >= 0.85:
            note += " and is CPU-bound (one Python thread)."
        elif cpu.get("machine", {}).get("cores", 0.0) >= 0.9 * cores:
            note += "; the machine's cores were saturated."
        else:
            note += "."
        notes.append(note)
    if hook["missing_after_202"]:
        notes.append(
            f"BUG: {len(hook['missing_after_202'])} webhook 202s named a run the API server did "
            "not have yet."
        )
    bad = {k: v for k, v in tp["states"].items() if k != "completed"}
    if bad:
        notes.append(f"runs that did not complete in the throughput phase: {bad}")
    counters = tp["workflow_counters_delta"]
    if counters.get("runCount") != tp["n"] or counters.get("successCount") != tp["n"]:
        notes.append(
            f"Workflow {THREE}'s counters moved by {counters} for {tp['n']} completed runs "
            "(lost or double counts)."
        )
    if tp.get("workflow_phase_after") not in (None, "Activated"):
        notes.append(
            f"Workflow {THREE} is {tp['workflow_phase_after']} (runs active) after all its runs "
            "completed: the controller still counts some finished runs as active."
        )
    gauge = r["rss"][-1]["runs_gauge"]
    expected_waiting = r["waiting"]["n"]
    if gauge.get("waiting") != expected_waiting:
        notes.append(
            f"blockflow_runs{{state=waiting}} reads {gauge.get('waiting')} with "
            f"{expected_waiting} runs waiting (gauge: {gauge})."
        )
    resume = r.get("resume")
    if resume and set(resume["codes"]) != {"200"}:
        notes.append(
            f"BUG: resuming the {resume['n']:,} waiting runs answered {resume['codes']}; of the "
            f"refused runs, the API server has {resume['refused_state_in_api_server']} "
            f"(first 50 checked; e.g. {', '.join(resume['refused_sample'][:3])}): the "
            "controller no longer indexes their hook tokens."
        )
    if not met.get("waiting", True):
        zero, waiting = (p["vmrss_mib"] for p in r["rss"][:2])
        notes.append(
            f"RSS: {waiting - zero:+.1f} MiB from 0 to {expected_waiting:,} waiting runs "
            f"({(waiting - zero) * 1024 / expected_waiting:.1f} KiB per waiting run)."
        )
    return notes


def report(r: dict[str, Any]) -> str:
    base, hook, tp, wait, api = r["baseline"], r["webhook"], r["throughput"], r["waiting"], r["api"]
    out = [
        f"## Blockflow workflow benchmark — runs={r['runs']:,}, concurrency={r['concurrency']}, "
        f"{r['started']}",
        "",
        f"API server {r['server']}; controller pid {r['controller_start']['pid']} (source "
        f"{r['controller_source']['sha256']}, newest file {r['controller_source']['newest_mtime']}"
        f"), workflows activated {r['controller_start']['activated_s']:.2f} s after start.",
        "",
    ]
    rows, met = summary_rows(r)
    out.append(
        markdown_table(
            ["#", "measurement", "result", "baseline (API server alone)", "ratio", "target", "met"],
            rows,
            {2, 4},
        )
    )
    out.append("")
    detail = [
        [
            "baseline",
            f"{r['runs']:,} creates / status PATCHes / create+PATCH pairs",
            f"{base['create_s']:.2f} s / {base['status_patch_s']:.2f} s / "
            f"{base['create_plus_patch_s']:.2f} s",
        ],
        [
            "baseline",
            f"create, status PATCH one at a time ({base['create_latency_c1_ms']['n']} each)",
            f"p50 {ms(base['create_latency_c1_ms']['p50'])} / "
            f"{ms(base['patch_latency_c1_ms']['p50'])}",
        ],
        [
            "webhook",
            f"POST → 202, then GET confirms ({hook['n']} sequential)",
            f"p50 {ms(hook['post_and_get_ms']['p50'])}; missing after 202: "
            f"{len(hook['missing_after_202'])}; 429s: {hook['rate_limited_429']}",
        ],
        [
            "webhook",
            "POST → run seen on the watch / completed seen",
            f"p50 {ms(hook['post_to_watch_added_ms']['p50'])} / "
            f"{ms(hook['post_to_completed_seen_ms']['p50'])}",
        ],
        [
            "webhook",
            "controller CPU per run, idle (POST + three steps)",
            f"{hook['controller_cpu_ms_per_run']:.1f} ms",
        ],
    ]
    for key, title in (
        ("admit_to_first_step", "run startedAt → a.startedAt (admit, count the start)"),
        ("record_and_plan", "a.finishedAt → b.startedAt (record reply, plan)"),
        ("begin_and_call", "b.startedAt → b.finishedAt (write running, call)"),
        ("last_step_to_finished", "c.finishedAt → run finishedAt"),
        ("run_started_to_finished", "run startedAt → finishedAt"),
    ):
        idle = r["steps"]["idle"].get(key)
        load = tp["steps_under_load"].get(key)
        if idle is None:
            continue
        detail.append(
            [
                "steps",
                title,
                f"idle p50 {ms(idle['p50'])} p99 {ms(idle['p99'])}; under load p50 "
                f"{ms(load['p50'] if load else math.nan)}",
            ]
        )
    transition_load = tp["steps_under_load"].get("transition")
    if transition_load:
        detail.append(
            [
                "steps",
                "step transition under load (throughput phase)",
                f"p50 {ms(transition_load['p50'])} p99 {ms(transition_load['p99'])}",
            ]
        )
    done = tp["done_after_s"]
    detail += [
        [
            "throughput",
            "creates done / first, half, last run completed",
            f"{tp['create_s']:.2f} s / {done['first']:.2f}, {done['half']:.2f}, "
            f"{done['last']:.2f} s",
        ],
        [
            "throughput",
            "create → completed per run under load",
            f"p50 {ms(tp['create_to_done_ms']['p50'], 0)} p99 "
            f"{ms(tp['create_to_done_ms']['p99'], 0)}",
        ],
        [
            "throughput",
            "engine done with all (accounted finished)",
            f"{tp['settled_s']:.2f} s" + ("" if tp["all_settled"] else " (NOT all)"),
        ],
        [
            "throughput",
            "writes per run: to the run / its Workflow / Events (namespace-scoped)",
            f"{tp['writes_to_run_per_run']:.2f} / {tp['writes_to_workflow_per_run']:.2f} / "
            f"{tp['events_per_run']:.2f}",
        ],
        [
            "throughput",
            "API writes / reads / 409s per run (metrics, all clients)",
            f"{api['writes_per_run']:.2f} / {api['reads_per_run']:.2f} / "
            f"{api['conflicts_409'] / tp['n']:.2f}",
        ],
        [
            "throughput",
            "CPU cores used",
            ", ".join(f"{k} {v['cores']:.2f}" for k, v in sorted(tp["cpu"].items())),
        ],
        [
            "throughput",
            "controller CPU per run / peak RSS",
            f"{tp['controller_cpu_ms_per_run']:.1f} ms / {tp['peak_rss_mib']:.1f} MiB",
        ],
        [
            "waiting",
            f"{wait['n']:,} hook runs created → all waiting",
            f"{wait['elapsed_s']:.2f} s ({num(wait['runs_per_min'])} runs/min), controller "
            f"CPU {wait['controller_cpu_ms_per_run']:.1f} ms per run",
        ],
    ]
    resume = r.get("resume")
    if resume:
        detail.append(
            [
                "resume",
                f"POST /hooks/<token> for the {resume['n']:,} waiting runs",
                f"answers {resume['codes']}; p50 {ms(resume['post_ms']['p50'])}; finished "
                f"{resume['finished']} after {resume['elapsed_s']:.2f} s",
            ]
        )
    for point in r["rss"]:
        gauge = ", ".join(f"{k} {v:.0f}" for k, v in sorted(point["runs_gauge"].items()) if v)
        detail.append(
            [
                "RSS",
                point["label"],
                f"VmRSS {point['vmrss_mib']:.1f} MiB, VmHWM {point['vmhwm_mib']:.1f} MiB; "
                f"blockflow_runs: {gauge or 'none'}",
            ]
        )
    out.append(markdown_table(["phase", "what", "measured"], detail, set()))
    out.append("")
    api_rows = [
        [row["verb"], row["resource"], row["code"], f"{row['count']:.0f}", f"{row['per_run']:.2f}"]
        for row in api["rows"]
    ]
    if api_rows:
        out.append(
            f"API requests during the throughput phase (apiserver_request_total; the "
            f"benchmark's {tp['n']:,} creates subtracted; {api['unrelated_requests']:.0f} on "
            "unrelated resources; this API server labels a GET of one custom resource LIST):"
        )
        out.append("")
        out.append(
            markdown_table(["verb", "resource", "code", "requests", "per run"], api_rows, {3, 4})
        )
        out.append("")
    fan = r.get("fan_out")
    if fan:
        per_run = tp["elapsed_s"] / tp["n"]
        out.append(
            f"Fan-out: one run of a forEach over {fan['items']:,} items (`sleep: 0`, "
            f"maxConcurrency {fan['max_concurrency']}): {fan['state']} in "
            f"{fan['elapsed_s']:.2f} s ({fan['items_per_s']:.0f} items/s; the throughput phase "
            f"finished a three-step run every {per_run * 1000:.1f} ms, "
            f"{fan['elapsed_s'] / fan['items'] / per_run:.2f}x that per item), "
            f"{fan['writes_to_run']} writes to the run ({fan['writes_per_item']:.2f} per item), "
            f"its largest version {fan['peak_bytes'] / 1024:.0f} KiB (final "
            f"{fan['final_bytes'] / 1024:.0f} KiB; etcd's limit is 1,536 KiB)."
        )
        out.append("")
    notes = notes_for(r, met)
    warnings = r.get("controller_warnings") or []
    if warnings:
        notes.append(
            "controller log warnings: "
            + "; ".join(f"{count}x {text}" for text, count in warnings[:5])
        )
    for note in notes:
        out.append(f"- {note}")
    for warning in r.get("interference", []):
        out.append(f"- ! {warning}")
    r["summary"] = {"rows": rows, "met": met, "notes": notes}
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------


async def run(
    args: argparse.Namespace, creds: Credentials, results: dict[str, Any], log_path: Path
) -> int:
    # SIGTERM (e.g. from `timeout`) cancels the run: the controller is stopped all the same.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    suffix = secrets.token_hex(3)
    kube = Kube(creds, pool=args.concurrency + 4)
    bench = Bench(kube, creds, args.runs, args.concurrency, args.latency_samples, results)
    status = 0
    try:
        await kube.request("GET", f"/apis/{GROUP}/{VERSION}/workflowruns?limit=1")  # CRDs there
        others = other_controllers({os.getpid()})
        if others:
            results["interference"].append(
                "other Blockflow controllers run on this machine: " + "; ".join(others)
            )
        await bench.baseline(f"bench-wf-floor-{suffix}")
        await bench.start_controller(f"bench-wf-{suffix}", log_path)
        await bench.warm_up()
        await bench.webhook_latency()
        # Waiting runs first, so their RSS is compared with zero waiting runs directly (a
        # burst of finished runs first would leave its allocator high-water mark in it).
        await bench.waiting()
        await bench.throughput()
        await bench.resume()
        await bench.fan_out()
        assert bench.controller is not None
        bench.controller.check_alive()
        results["controller_metrics"] = await bench.metrics()
        results["controller_log_levels"] = bench.controller.log_summary()
        results["controller_warnings"] = bench.controller.warnings()
        print()
        print(report(results))
    except* (BenchError, aiohttp.ClientError, TimeoutError) as group:
        status = 1
        for exc in group.exceptions:
            print(f"\nFAILED: {exc!r}", file=sys.stderr)
            results.setdefault("errors", []).append(repr(exc))
        if bench.controller is not None:
            print(f"--- controller log (tail; full log {log_path}) ---", file=sys.stderr)
            print(bench.controller.log_tail(), file=sys.stderr)
    finally:
        print("cleaning up: controller stopped, namespaces deleted (not waited for)", flush=True)
        await bench.cleanup()
        await kube.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs",
        type=int,
        default=1000,
        help="runs for throughput and for the waiting runs (default 1000)",
    )
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=None,
        help="sequential webhook POSTs / runs for the step transitions (default min(200, runs))",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.latency_samples is None:
        args.latency_samples = min(200, args.runs)
    if args.runs < 1 or args.concurrency < 1 or args.latency_samples < 1:
        parser.error("--runs, --concurrency and --latency-samples must be at least 1")
    fields = {
        "runs": args.runs,
        "concurrency": args.concurrency,
        "latency_samples": args.latency_samples,
        "targets": {
            "latency_p50_ms": TARGET_LATENCY_MS,
            "runs_per_min": TARGET_RUNS_PER_MIN,
            "waiting_delta_mib": TARGET_WAITING_MIB,
        },
    }
    return bench_main("workflows", args, fields, run)


if __name__ == "__main__":
    raise SystemExit(main())
