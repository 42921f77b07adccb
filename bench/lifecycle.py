"""Lifecycle benchmark: noop Blocks → Ready, against the raw API server's status-PATCH floor.

Run by hand against the local control plane (``hack/control-plane.sh up``)::

    .venv/bin/python bench/lifecycle.py [--n 1000] [--concurrency 32]

Everything happens in one run, so the figures are ratios against a baseline measured on the
same (noisy) machine a minute earlier:

1. baseline: N Blocks in a namespace no controller watches, then N JSON merge patches of
   their status subresource at the given concurrency (the physical floor: one write each);
2. controller: the real controller (a subprocess) on a fresh namespace with one noop App;
   N noop Blocks created at the same concurrency, timed from the first create until all are
   Ready (one watch stream counts them);
3. latency: single Blocks created one at a time on the idle controller, apply → Ready;
4. API requests per reconcile: ``apiserver_request_total`` before/after phase 2;
5. the controller's peak RSS during phase 2.

It prints a table and writes ``bench/results/lifecycle-<timestamp>.json``. It never fails on
timing: the exit status is non-zero only when something is broken (objects never Ready, the
controller died, the API server refused a request).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

# The shared harness (this file runs as a script: bench/ is on sys.path).
from harness import (
    GROUP,
    READ_VERBS,
    RUNTIME_RESOURCES,
    VERSION,
    WRITE_VERBS,
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
    fmt,
    median,
    metric_delta,
    now_iso,
    percentile,
    proc_status_kib,
    run_pool,
    scrape_requests,
)

FINALIZER = "blockflow.dev/lifecycle"


APP_NAME = "bench"


MIB = 1024 * 1024


APP_READY_TIMEOUT = 90.0  # controller start + the App's first reconcile


SINGLE_READY_TIMEOUT = 30.0  # one Block on an idle controller


def is_ready(obj: dict[str, Any]) -> bool:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def blocks_path(namespace: str, name: str = "", sub: str = "") -> str:
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/blocks"
    if name:
        path += f"/{name}"
    if sub:
        path += f"/{sub}"
    return path


def block_manifest(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Block",
        "metadata": {"name": name},
        "spec": {"app": APP_NAME, "type": "noop"},
    }


def ready_status_patch(generation: int = 1) -> dict[str, Any]:
    """A status of the shape (and about the size) the runtime writes for a ready noop Block."""
    stamp = now_iso()
    conditions = [
        {
            "type": kind,
            "status": status,
            "reason": "Ready",
            "message": "Ready",
            "lastTransitionTime": stamp,
            "observedGeneration": generation,
        }
        for kind, status in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"))
    ]
    return {
        "status": {
            "observedGeneration": generation,
            "lifecycle": {
                "status": "ready",
                "description": "Ready",
                "lastSyncTime": stamp,
                "nextSyncTime": None,
                "attempts": 0,
                "lastError": None,
                "handlerVersion": "bench",
                "inputsHash": secrets.token_hex(8),
                "lastHandledSyncAt": None,
                "lastHandledDrainAt": None,
            },
            "conditions": conditions,
        }
    }


@dataclass
class Track:
    """What the benchmark saw of one Block (perf_counter seconds)."""

    sent: float | None = None  # POST sent
    answered: float | None = None  # POST answered
    added: float | None = None  # ADDED seen on the watch
    first_write: float | None = None  # first MODIFIED seen (the controller's first write)
    ready: float | None = None  # Ready=True seen
    modified: int = 0  # MODIFIED events: writes to the object itself

    def is_ready(self) -> bool:
        return self.ready is not None


def segments(tracks: list[Track]) -> dict[str, float]:
    """Median milliseconds of each step from POST to Ready, as seen by the benchmark."""

    def p50(pairs: Iterable[tuple[float | None, float | None]]) -> float:
        return median((b - a) * 1000 for a, b in pairs if a is not None and b is not None)

    return {
        "post_answered": p50((t.sent, t.answered) for t in tracks),
        "post_to_watch_added": p50((t.sent, t.added) for t in tracks),
        "added_to_first_write": p50((t.added, t.first_write) for t in tracks),
        "first_write_to_ready": p50((t.first_write, t.ready) for t in tracks),
    }


class BlockWatch(Watch):
    """The Blocks of a namespace; records when each is added, first written and Ready."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        super().__init__(kube, blocks_path(namespace))
        self.tracks: dict[str, Track] = {}
        self.ready_count = 0

    def track(self, name: str) -> Track:
        found = self.tracks.get(name)
        if found is None:
            found = self.tracks[name] = Track()
        return found

    def _seen(self, obj: dict[str, Any], kind: str | None, size: int) -> None:
        at = time.perf_counter()
        track = self.track(obj["metadata"]["name"])
        if kind == "ADDED" and track.added is None:
            track.added = at
        elif kind == "MODIFIED":
            track.modified += 1
            if track.first_write is None:
                track.first_write = at
        if track.ready is None and is_ready(obj):
            track.ready = at
            self.ready_count += 1


@dataclass
class Bench:
    kube: Kube
    creds: Credentials
    n: int
    concurrency: int
    latency_samples: int
    results: dict[str, Any]
    namespaces: list[str] = field(default_factory=list)
    controller: Controller | None = None
    watch: BlockWatch | None = None

    @property
    def timeout(self) -> float:
        """Generous: all N Ready within this many seconds, else something is broken."""
        return 120.0 + self.n * 0.5

    # -- phase 1 -------------------------------------------------------------------------

    async def baseline(self, namespace: str) -> None:
        print(f"phase 1: baseline in {namespace} (no controller watches it)", flush=True)
        await create_namespace(self.kube, namespace)
        self.namespaces.append(namespace)
        names = [f"floor-{i:05d}" for i in range(self.n)]

        async def create(i: int) -> None:
            await self.kube.request("POST", blocks_path(namespace), block_manifest(names[i]))

        async def patch(i: int) -> None:
            await self.kube.request(
                "PATCH",
                blocks_path(namespace, names[i], "status"),
                ready_status_patch(),
                content_type="application/merge-patch+json",
            )

        meter = CpuMeter(control_plane_pids(self.creds.server))
        create_s = await run_pool(self.n, self.concurrency, create)
        meter.start()
        patch_s = await run_pool(self.n, self.concurrency, patch)
        cpu = meter.stop()
        # The same patch one at a time: the latency of one write on an idle server.
        sequential = min(self.n, 100)
        latencies: list[float] = []
        for i in range(sequential):
            t0 = time.perf_counter()
            await patch(i)
            latencies.append((time.perf_counter() - t0) * 1000)
        # A cluster-wide Blockflow controller elsewhere would have put its finalizer here.
        listing = await self.kube.get_json(blocks_path(namespace))
        foreign = sum(
            1
            for obj in listing.get("items") or []
            if FINALIZER in (obj["metadata"].get("finalizers") or [])
        )
        self.results["baseline"] = {
            "namespace": namespace,
            "create_s": create_s,
            "creates_per_s": self.n / create_s,
            "patch_s": patch_s,
            "patches_per_s": self.n / patch_s,
            "patch_latency_c1_ms": {
                "n": sequential,
                "p50": median(latencies),
                "p99": percentile(latencies, 99),
            },
            "cpu": cpu,
            "blocks_touched_by_another_controller": foreign,
        }
        print(
            f"  {self.n} creates in {create_s:.2f}s, {self.n} status patches in {patch_s:.2f}s "
            f"({self.n / patch_s:.0f}/s)",
            flush=True,
        )
        await self.client_probe(namespace, names)

    async def client_probe(self, namespace: str, names: list[str]) -> None:
        """The controller's own client, and its three writes per Block, without kopf.

        Informational (the ratio is against the raw floor above): the same status patches
        through the runtime's client (``controller.kube.rest``), then the runtime's ``KubeApi``
        doing what one reconcile of a noop Block does — finalizer patch, status patch, Ready
        Event — at the same concurrency.
        """
        from controller.kube.api import KubeApi
        from controller.kube.connection import connection_info, load_config
        from controller.kube.rest import MERGE_PATCH, RestClient

        os.environ["KUBECONFIG"] = str(self.creds.kubeconfig)
        single = load_config()

        async def login() -> Any:
            return await connection_info(single)

        client = RestClient(login, limit=self.concurrency + 8)
        api = KubeApi(client)
        try:

            async def patch(i: int) -> None:
                await client.request(
                    "PATCH",
                    f"{blocks_path(namespace)}/{names[i]}/status",
                    body=ready_status_patch(),
                    content_type=MERGE_PATCH,
                )

            cpu0 = time.process_time()
            patch_s = await run_pool(self.n, self.concurrency, patch)
            patch_cpu = time.process_time() - cpu0
            listing = await self.kube.get_json(blocks_path(namespace))
            bodies = {o["metadata"]["name"]: o for o in listing.get("items") or []}

            async def reconcile_writes(i: int) -> None:
                body = await api.add_finalizer("Block", bodies[names[i]])
                status = ready_status_patch()["status"]
                body = await api.patch_status("Block", namespace, names[i], status)
                await api.post_event(body, "Normal", "Ready", "Ready")

            cpu0 = time.process_time()
            writes_s = await run_pool(self.n, self.concurrency, reconcile_writes)
            writes_cpu = time.process_time() - cpu0
        finally:
            await client.close()
        self.results["baseline"]["controller_client"] = {
            "status_patches_per_s": self.n / patch_s,
            "status_patch_cpu_ms": patch_cpu * 1000 / self.n,
            "runtime_writes_objects_per_s": self.n / writes_s,
            "runtime_writes_cpu_ms_per_object": writes_cpu * 1000 / self.n,
        }
        print(
            f"  controller's client (aiohttp): {self.n / patch_s:.0f} status patches/s; "
            f"finalizer + status + Event per Block, no kopf: {self.n / writes_s:.0f} Blocks/s",
            flush=True,
        )

    # -- phase 2 -------------------------------------------------------------------------

    async def start_controller(self, namespace: str, log_path: Path) -> None:
        print(f"phase 2: controller on {namespace}", flush=True)
        await create_namespace(self.kube, namespace)
        self.namespaces.append(namespace)
        app = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "App",
            "metadata": {"name": APP_NAME},
            "spec": {"handler": {"python": "noop"}},
        }
        await self.kube.request("POST", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/apps", app)
        self.controller = Controller(self.creds, namespace, log_path)
        started = time.perf_counter()
        await self.controller.start()
        deadline = started + APP_READY_TIMEOUT
        app_path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/apps/{APP_NAME}"
        while not is_ready(await self.kube.get_json(app_path)):
            self.controller.check_alive()
            if time.perf_counter() > deadline:
                raise BenchError(f"the App was not Ready within {APP_READY_TIMEOUT:.0f}s")
            await asyncio.sleep(0.1)
        app_ready_s = time.perf_counter() - started
        await self.controller.wait_quiet()
        self.results["controller_start"] = {
            "app_ready_s": app_ready_s,
            "idle_rss_mib": (proc_status_kib(self.controller.pid, "VmRSS") or 0) / 1024,
            "pid": self.controller.pid,
        }
        print(f"  controller up, App Ready after {app_ready_s:.2f}s", flush=True)

    async def throughput(self, namespace: str) -> None:
        assert self.controller is not None
        controller = self.controller
        self.watch = watch = BlockWatch(self.kube, namespace)
        await watch.start()
        names = [f"blk-{i:05d}" for i in range(self.n)]

        async def create(i: int) -> None:
            track = watch.track(names[i])
            track.sent = time.perf_counter()
            await self.kube.request("POST", blocks_path(namespace), block_manifest(names[i]))
            track.answered = time.perf_counter()

        pids = {**control_plane_pids(self.creds.server), "controller": controller.pid}
        meter = CpuMeter(pids)
        before = await scrape_requests(self.kube)
        controller.start_sampling()
        meter.start()
        started = time.perf_counter()
        create_s = await run_pool(self.n, self.concurrency, create)
        # The namespace holds only these Blocks: counting Ready ones is enough (O(1) per event).
        all_ready = await watch.wait_until(lambda: watch.ready_count >= self.n, self.timeout)
        elapsed = time.perf_counter() - started
        cpu = meter.stop()
        if not all_ready:
            missing = sum(1 for name in names if watch.tracks[name].ready is None)
            raise BenchError(f"{missing} of {self.n} Blocks not Ready after {self.timeout:.0f}s")
        settled = await controller.wait_quiet()
        await controller.stop_sampling()
        hwm = proc_status_kib(controller.pid, "VmHWM") or 0
        after = await scrape_requests(self.kube)
        tracks = [watch.tracks[name] for name in names]
        under_load = [
            (t.ready - t.sent) * 1000 for t in tracks if t.ready is not None and t.sent is not None
        ]
        events = await self.kube.get_json(f"/api/v1/namespaces/{namespace}/events")
        block_events = [
            e
            for e in events.get("items") or []
            if (e.get("involvedObject") or {}).get("kind") == "Block"
            and str((e.get("involvedObject") or {}).get("name", "")).startswith("blk-")
        ]
        by_reason: dict[str, int] = defaultdict(int)
        for event in block_events:
            by_reason[str(event.get("reason"))] += int(event.get("count") or 1)
        owned = await self.kube.get_json(
            f"/api/v1/namespaces/{namespace}/secrets"
            "?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dblockflow"
        )
        modified = [t.modified for t in tracks]
        self.results["controller"] = {
            "namespace": namespace,
            "create_s": create_s,
            "elapsed_s": elapsed,
            "objects_per_s": self.n / elapsed,
            "ratio": (self.n / elapsed) / self.results["baseline"]["patches_per_s"],
            "latency_under_load_ms": {
                "p50": median(under_load),
                "p99": percentile(under_load, 99),
            },
            "segments_p50_ms": segments(tracks),
            "ready_after_s": {
                "first": min(t.ready for t in tracks if t.ready) - started,
                "half": median(t.ready for t in tracks if t.ready) - started,
                "last": max(t.ready for t in tracks if t.ready) - started,
            },
            "cpu": cpu,
            "settled": settled,
            "rss": {
                "vmhwm_mib": hwm / 1024,
                "max_sampled_vmrss_mib": controller.rss_max_kib / 1024,
                "samples": controller.rss_samples,
            },
            "namespace_scoped": {
                "object_writes_per_block": sum(modified) / self.n,
                "object_writes_histogram": {
                    str(k): modified.count(k) for k in sorted(set(modified))
                },
                "events_per_block": sum(by_reason.values()) / self.n,
                "events_by_reason": dict(by_reason),
                "owned_secrets": len(owned.get("items") or []),
                "watch_restarts": watch.restarts,
            },
            "benchmark_retries": self.kube.retries,
        }
        self.results["api"] = attribute_requests(metric_delta(before, after), self.n)
        print(f"  {self.n} Blocks Ready in {elapsed:.2f}s ({self.n / elapsed:.0f}/s)", flush=True)

    # -- phase 3 -------------------------------------------------------------------------

    async def latency(self, namespace: str) -> None:
        assert self.controller is not None and self.watch is not None
        controller, watch = self.controller, self.watch
        print(f"phase 3: {self.latency_samples} single Blocks on the idle controller", flush=True)
        await controller.wait_quiet()
        tracks: list[Track] = []
        for i in range(self.latency_samples):
            name = f"lat-{i:04d}"
            track = watch.track(name)
            track.sent = time.perf_counter()
            await self.kube.request("POST", blocks_path(namespace), block_manifest(name))
            track.answered = time.perf_counter()
            if not await watch.wait_until(track.is_ready, SINGLE_READY_TIMEOUT):
                controller.check_alive()
                raise BenchError(f"Block {name} not Ready within {SINGLE_READY_TIMEOUT:.0f}s")
            tracks.append(track)
            await asyncio.sleep(0.05)  # stay idle between samples

        total = [(t.ready - t.sent) * 1000 for t in tracks if t.ready and t.sent]
        self.results["latency"] = {
            "n": len(total),
            "p50_ms": median(total),
            "p99_ms": percentile(total, 99),
            "max_ms": max(total),
            "samples_ms": [round(v, 2) for v in total],
            "segments_p50_ms": segments(tracks),
            "object_writes_per_block": sum(t.modified for t in tracks) / max(1, len(tracks)),
        }

    # -- cleanup -------------------------------------------------------------------------

    async def cleanup(self) -> None:
        if self.watch is not None:
            await self.watch.stop()
        if self.controller is not None:
            await self.controller.stop()
        for namespace in self.namespaces:
            await drop_namespace(self.kube, namespace, ("blocks", "apps"), self.concurrency)


def attribute_requests(delta: dict[MetricKey, float], n: int) -> dict[str, Any]:
    """Requests of phase 2 by verb and resource, the benchmark's own creates and watches out."""
    rows: dict[tuple[str, str, str], float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    other: dict[str, float] = defaultdict(float)
    for (verb, group, resource, subresource, code), count in delta.items():
        if not resource:
            continue  # non-resource URLs (/metrics, /healthz, discovery)
        if (group, resource) not in RUNTIME_RESOURCES:
            # the controller-manager, other engineers' tests
            other[f"{verb} {resource}" + (f"/{subresource}" if subresource else "")] += count
            continue
        label = resource + (f"/{subresource}" if subresource else "")
        rows[(verb, group, label)] += count
        if not code.startswith("2"):
            errors[f"{verb} {label} {code}"] += count
    rows[("POST", GROUP, "blocks")] -= n  # the benchmark's own creates
    table: list[dict[str, Any]] = [
        {
            "verb": verb,
            "resource": label,
            "group": group,
            "count": count,
            "per_block": count / n,
        }
        for (verb, group, label), count in sorted(rows.items(), key=lambda kv: (-kv[1], kv[0]))
        if count > 0
    ]
    writes = sum(r["count"] for r in table if r["verb"] in WRITE_VERBS)
    reads = sum(r["count"] for r in table if r["verb"] in READ_VERBS)
    watches = sum(r["count"] for r in table if r["verb"] == "WATCH")
    return {
        "rows": table,
        "writes_per_block": writes / n,
        "reads_per_block": reads / n,
        "watch_requests_ended": watches,
        "non_2xx": dict(errors),
        "unrelated_requests": sum(other.values()),
        "unrelated_top": dict(sorted(other.items(), key=lambda kv: -kv[1])[:8]),
    }


def render_table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def analyse(r: dict[str, Any], n: int) -> tuple[list[list[str]], list[str]]:
    """The summary rows and a 'what limits it' note per missed target."""
    base, ctl, lat, api = r["baseline"], r["controller"], r["latency"], r["api"]
    rss = max(ctl["rss"]["vmhwm_mib"], ctl["rss"]["max_sampled_vmrss_mib"])
    writes = api["writes_per_block"]
    scoped = ctl["namespace_scoped"]
    scoped_writes = scoped["object_writes_per_block"] + scoped["events_per_block"]
    scoped_writes += scoped["owned_secrets"] / n
    checks = [
        ("ratio objects/s ÷ patches/s", ctl["ratio"], 0.9, "≥", "{:.2f}"),
        ("apply→Ready p50 (idle), ms", lat["p50_ms"], 50.0, "≤", "{:.1f}"),
        ("apply→Ready p99 (idle), ms", lat["p99_ms"], 250.0, "≤", "{:.1f}"),
        (f"peak RSS at {n:,} Blocks, MiB", rss, 100.0, "≤", "{:.1f}"),
    ]
    rows: list[list[str]] = [
        ["baseline status PATCH/s", f"{base['patches_per_s']:.0f}", "", ""],
        ["controller objects → Ready/s", f"{ctl['objects_per_s']:.0f}", "", ""],
    ]
    met: dict[str, bool] = {}
    for name, value, target, op, form in checks:
        ok = value >= target if op == "≥" else value <= target
        met[name] = ok
        rows.append(
            [name, form.format(value), f"{op} {form.format(target)}", "yes" if ok else "NO"]
        )
    rows.append(["API writes per Block (metrics)", f"{writes:.2f}", "1 (floor)", ""])
    rows.append(["writes per Block (namespace-scoped)", f"{scoped_writes:.2f}", "1 (floor)", ""])
    rows.append(["API reads per Block", f"{api['reads_per_block']:.2f}", "", ""])

    notes: list[str] = []
    patch_rate, create_rate = base["patches_per_s"], base["creates_per_s"]
    w = scoped_writes if scoped_writes > 0 else writes
    if not met[checks[0][0]]:
        ceiling = 1 / (1 / create_rate + w / patch_rate)
        ctl_cpu = ctl["cpu"].get("controller", {})
        api_cpu = ctl["cpu"].get("kube-apiserver", {})
        note = (
            f"ratio: each Block costs {w:.2f} API writes plus the benchmark's create, where the "
            f"floor costs one write: {w:.2f} writes alone cap the ratio at {1 / w:.2f}; with the "
            f"creates (baseline {create_rate:.0f}/s) the API-server-bound ceiling is "
            f"{ceiling:.0f}/s = ratio {ceiling / patch_rate:.2f}."
        )
        if ctl_cpu:
            note += (
                f" The controller used {ctl_cpu['cores']:.2f} of a core "
                f"({ctl_cpu['cpu_s'] * 1000 / n:.1f} ms CPU per Block)"
            )
            if api_cpu:
                note += f", kube-apiserver {api_cpu['cores']:.2f} cores"
            machine = ctl["cpu"].get("machine", {}).get("cores", 0.0)
            cores = os.cpu_count() or 1
            note += f", the whole machine {machine:.2f} of {cores} cores"
            if ctl_cpu["cores"] >= 0.85:
                note += "; the controller is CPU-bound (one Python thread)."
            elif machine >= 0.9 * cores:
                note += "; the machine's cores were saturated (by other processes too)."
            else:
                note += (
                    "; nothing is CPU-saturated: the controller's workers wait on their"
                    " sequential requests (latency-bound)."
                )
        probe = base.get("controller_client")
        if probe:
            note += (
                f" Through the controller's client (aiohttp) the same status patches run"
                f" at {probe['status_patches_per_s']:.0f}/s"
                f" ({probe['status_patch_cpu_ms']:.2f} ms client CPU each), and one reconcile's"
                f" three writes without kopf at {probe['runtime_writes_objects_per_s']:.0f}"
                f" Blocks/s (ratio {probe['runtime_writes_objects_per_s'] / patch_rate:.2f});"
                f" the controller with kopf reached {ctl['objects_per_s']:.0f}/s."
            )
        notes.append(note)
    if not met[checks[1][0]] or not met[checks[2][0]]:
        seg = lat["segments_p50_ms"]
        notes.append(
            "latency (p50 segments): POST answered "
            f"{fmt(seg['post_answered'])} ms, watch ADDED at +{fmt(seg['post_to_watch_added'])} "
            f"ms, controller's first write seen +{fmt(seg['added_to_first_write'])} ms later, "
            f"Ready +{fmt(seg['first_write_to_ready'])} ms after that; "
            f"{lat['object_writes_per_block']:.1f} sequential writes to the object per apply "
            f"(raw PATCH at concurrency 1: p50 {fmt(base['patch_latency_c1_ms']['p50'])} ms)."
        )
    if not met[checks[3][0]]:
        idle = r["controller_start"]["idle_rss_mib"]
        notes.append(
            f"RSS: {idle:.1f} MiB idle with the App only, {rss:.1f} MiB peak: "
            f"{(rss - idle) * 1024 / n:.0f} KiB per Block (the runtime's Store keeps every "
            "body; kopf keeps a per-object worker task, queue and its own body caches)."
        )
    if abs(writes - scoped_writes) > 0.1 * max(writes, scoped_writes, 1e-9):
        notes.append(
            f"metrics count {writes:.2f} writes per Block but the namespace shows "
            f"{scoped_writes:.2f}: other clients wrote to the same resources during phase 2."
        )
    return rows, notes


def report(r: dict[str, Any], n: int, concurrency: int) -> str:
    base, ctl, lat, api = r["baseline"], r["controller"], r["latency"], r["api"]
    out = [
        f"Blockflow lifecycle benchmark  N={n:,}  concurrency={concurrency}  {r['started']}",
        f"API server {r['server']}",
        "",
    ]
    cpu_cells = []
    for phase, cpu in (("baseline patches", base["cpu"]), ("controller phase", ctl["cpu"])):
        cells = ", ".join(f"{k} {v['cores']:.2f}" for k, v in sorted(cpu.items()))
        cpu_cells.append(f"  CPU cores used during {phase}: {cells}")
    phases = [
        [
            "1 baseline",
            "create Blocks (no controller)",
            f"{base['create_s']:.2f} s",
            f"{base['creates_per_s']:.0f} /s",
        ],
        [
            "1 baseline",
            "status PATCH (merge)",
            f"{base['patch_s']:.2f} s",
            f"{base['patches_per_s']:.0f} /s",
        ],
        [
            "1 baseline",
            f"status PATCH one at a time ({base['patch_latency_c1_ms']['n']})",
            f"p50 {fmt(base['patch_latency_c1_ms']['p50'])} ms",
            f"p99 {fmt(base['patch_latency_c1_ms']['p99'])} ms",
        ],
        [
            "1 baseline",
            "status PATCH via the controller's client",
            f"{base['controller_client']['status_patch_cpu_ms']:.2f} ms CPU",
            f"{base['controller_client']['status_patches_per_s']:.0f} /s",
        ],
        [
            "1 baseline",
            "finalizer+status+Event via KubeApi, no kopf",
            f"{base['controller_client']['runtime_writes_cpu_ms_per_object']:.2f} ms CPU",
            f"{base['controller_client']['runtime_writes_objects_per_s']:.0f} /s",
        ],
        [
            "2 controller",
            "create → all Ready",
            f"{ctl['elapsed_s']:.2f} s",
            f"{ctl['objects_per_s']:.0f} /s",
        ],
        [
            "2 controller",
            "  of which the creates",
            f"{ctl['create_s']:.2f} s",
            f"{n / ctl['create_s']:.0f} /s",
        ],
        [
            "2 controller",
            "create → Ready per Block under load",
            f"p50 {fmt(ctl['latency_under_load_ms']['p50'], 0)} ms",
            f"p99 {fmt(ctl['latency_under_load_ms']['p99'], 0)} ms",
        ],
        [
            "2 controller",
            "RSS (VmHWM / max sampled VmRSS)",
            f"{ctl['rss']['vmhwm_mib']:.1f} MiB",
            f"{ctl['rss']['max_sampled_vmrss_mib']:.1f} MiB",
        ],
        [
            "3 latency",
            f"apply → Ready, idle ({lat['n']} sequential)",
            f"p50 {fmt(lat['p50_ms'])} ms",
            f"p99 {fmt(lat['p99_ms'])} ms",
        ],
    ]
    out.append(render_table(["phase", "what", "time", "rate"], phases, {2, 3}))
    out.extend(cpu_cells)
    for title, seg in (
        ("under load (phase 2)", ctl["segments_p50_ms"]),
        ("idle (phase 3)", lat["segments_p50_ms"]),
    ):
        out.append(
            f"  p50 steps {title}: POST answered {fmt(seg['post_answered'])} ms; watch ADDED "
            f"{fmt(seg['post_to_watch_added'])} ms; ADDED → first write "
            f"{fmt(seg['added_to_first_write'])} ms; first write → Ready "
            f"{fmt(seg['first_write_to_ready'])} ms"
        )
    timeline = ctl["ready_after_s"]
    out.append(
        f"  phase 2 timeline: creates done {ctl['create_s']:.2f} s; first Ready "
        f"{timeline['first']:.2f} s, half {timeline['half']:.2f} s, last {timeline['last']:.2f} s"
    )
    out.append("")
    out.append(
        "4 API requests during phase 2 (apiserver_request_total; the benchmark's "
        f"{n:,} Block creates subtracted)"
    )
    api_rows = [
        [
            row["verb"],
            row["resource"] + (f" ({row['group']})" if row["group"] not in ("", GROUP) else ""),
            f"{row['count']:.0f}",
            f"{row['per_block']:.3f}",
        ]
        for row in api["rows"]
    ]
    if api_rows:
        out.append(render_table(["verb", "resource", "requests", "per Block"], api_rows, {2, 3}))
    scoped = ctl["namespace_scoped"]
    hist = ", ".join(f"{k}: {v}" for k, v in scoped["object_writes_histogram"].items())
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(scoped["events_by_reason"].items()))
    out.append(
        f"  writes per Block {api['writes_per_block']:.2f}, reads per Block "
        f"{api['reads_per_block']:.2f}; watch requests ended in the window "
        f"{api['watch_requests_ended']:.0f}; requests on unrelated resources "
        f"{api['unrelated_requests']:.0f}; non-2xx: {api['non_2xx'] or 'none'}"
    )
    out.append(
        f"  namespace-scoped check: writes to each Block object (watch MODIFIED) {hist}; "
        f"Events on Blocks: {reasons or 'none'}; owned Secrets {scoped['owned_secrets']}"
    )
    out.append("")
    rows, notes = analyse(r, n)
    out.append("Summary")
    out.append(render_table(["figure", "value", "target", "met"], rows, {1}))
    for note in notes:
        out.append(f"  - {note}")
    for warning in r.get("interference", []):
        out.append(f"  ! {warning}")
    r["summary"] = {"rows": rows, "notes": notes}
    return "\n".join(out)


async def run(
    args: argparse.Namespace, creds: Credentials, results: dict[str, Any], log_path: Path
) -> int:
    suffix = secrets.token_hex(3)
    kube = Kube(creds, pool=args.concurrency + 4)
    bench = Bench(kube, creds, args.n, args.concurrency, args.latency_samples, results)
    status = 0
    try:
        await kube.request("GET", f"/apis/{GROUP}/{VERSION}")  # the CRDs are installed
        await bench.baseline(f"bench-floor-{suffix}")
        await bench.start_controller(f"bench-ctl-{suffix}", log_path)
        await bench.throughput(f"bench-ctl-{suffix}")
        await bench.latency(f"bench-ctl-{suffix}")
        assert bench.controller is not None
        results["controller_log_levels"] = bench.controller.log_summary()
        foreign = results["baseline"]["blocks_touched_by_another_controller"]
        if foreign:
            results["interference"].append(
                f"another Blockflow controller put its finalizer on {foreign} baseline Blocks: "
                "a cluster-wide controller is running and competes for the API server"
            )
        unrelated = results["api"]["unrelated_requests"]
        if unrelated > 0.05 * args.n:
            results["interference"].append(
                f"{unrelated:.0f} requests on unrelated resources during phase 2 "
                "(other clients of this API server were busy)"
            )
        print()
        print(report(results, args.n, args.concurrency))
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
    parser.add_argument("--n", type=int, default=1000, help="Blocks per phase (default 1000)")
    parser.add_argument(
        "--latency-samples",
        type=int,
        default=50,
        help="single Blocks for the idle apply→Ready latency (default 50)",
    )
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.n < 1 or args.concurrency < 1 or args.latency_samples < 1:
        parser.error("--n, --concurrency and --latency-samples must be at least 1")
    fields = {"n": args.n, "concurrency": args.concurrency, "latency_samples": args.latency_samples}
    return bench_main("lifecycle", args, fields, run)


if __name__ == "__main__":
    raise SystemExit(main())
