"""What both benchmarks share: the API client and credentials, the controller as a
subprocess, watches, CPU and memory meters, request metrics, percentiles, the pool that
keeps N requests in flight, namespaces, and the command line and results file.

Each benchmark measures its baseline (the API server alone) and the controller in the same
run, on the same machine, and reports ratios; absolute figures from different runs are not
comparable on these noisy 2-core machines.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import math
import os
import re
import signal
import ssl
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


CONTROL_PLANE_DIR = Path(
    os.environ.get("BLOCKFLOW_CONTROL_PLANE_DIR", ROOT / ".local" / "control-plane")
)


RESULTS_DIR = ROOT / "bench" / "results"


GROUP, VERSION = "blockflow.dev", "v1alpha1"


CLK_TCK = os.sysconf("SC_CLK_TCK")


REQUEST_TIMEOUT = 60.0  # one API request


SETTLE_TIMEOUT = 60.0  # controller back to idle after a phase


WATCH_RESTARTS = 5


LOOPBACK = {"127.0.0.1", "localhost", "::1"}


WRITE_VERBS = {"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"}


READ_VERBS = {"GET", "LIST"}


# (group, resource) the lifecycle runtime may touch for a Block.
RUNTIME_RESOURCES = {
    (GROUP, "blocks"),
    (GROUP, "apps"),
    ("", "secrets"),
    ("", "configmaps"),
    ("", "events"),
    ("events.k8s.io", "events"),
}


class BenchError(Exception):
    """Something is broken (not merely slow): the run fails."""


def percentile(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: Iterable[float]) -> float:
    return percentile(values, 50)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU time of a process (None when it is gone or unreadable)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # fields[0] is field 3 ("state")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat), for the machine's load."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    busy = sum(values[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / CLK_TCK


def proc_status_kib(pid: int, key: str) -> int | None:
    """A ``VmRSS``/``VmHWM``-style value from /proc/<pid>/status, in KiB."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:,.{digits}f}"


@dataclass(frozen=True)
class Credentials:
    server: str
    token: str
    ca_data: bytes | None
    ca_path: str | None
    kubeconfig: Path


def load_credentials(kubeconfig: Path) -> Credentials:
    """Server, bearer token and CA of the kubeconfig's current context (loopback only)."""
    text = kubeconfig.read_text()
    try:
        config: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        import yaml  # the local control plane writes JSON; other kubeconfigs are YAML

        config = yaml.safe_load(text)
    context_name = config.get("current-context")
    contexts = {c["name"]: c["context"] for c in config.get("contexts") or []}
    if context_name not in contexts:
        raise BenchError(f"{kubeconfig}: no current context")
    context = contexts[context_name]
    cluster = {c["name"]: c["cluster"] for c in config.get("clusters") or []}[context["cluster"]]
    user = {u["name"]: u["user"] for u in config.get("users") or []}[context["user"]]
    server = str(cluster["server"]).rstrip("/")
    if urlsplit(server).hostname not in LOOPBACK:
        raise BenchError(f"refusing to benchmark a non-loopback API server: {server}")
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    if not token:
        raise BenchError(f"{kubeconfig}: the current user has no bearer token")
    ca_data = cluster.get("certificate-authority-data")
    ca_path = cluster.get("certificate-authority")
    if ca_path and not Path(ca_path).is_absolute():
        ca_path = str(kubeconfig.parent / ca_path)
    return Credentials(
        server=server,
        token=str(token),
        ca_data=base64.b64decode(ca_data) if ca_data else None,
        ca_path=ca_path,
        kubeconfig=kubeconfig,
    )


def control_plane_pids(server: str) -> dict[str, int]:
    """kube-apiserver and etcd pids of the local control plane (for CPU figures), if known."""
    try:
        state = json.loads((CONTROL_PLANE_DIR / "state.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    if str(state.get("server", "")).rstrip("/") != server:
        return {}
    pids = state.get("pids") or {}
    return {name: int(pids[name]) for name in ("kube-apiserver", "etcd") if name in pids}


class Kube:
    """A thin aiohttp client: the same (small) overhead for every phase."""

    def __init__(self, creds: Credentials, pool: int) -> None:
        context = ssl.create_default_context(cafile=creds.ca_path)
        if creds.ca_data:
            context.load_verify_locations(cadata=creds.ca_data.decode())
        self.server = creds.server
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=context, limit=pool),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            headers={"Authorization": f"Bearer {creds.token}", "Accept": "application/json"},
        )
        self.retries = 0

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> bytes:
        """One request (a few bounded retries on 429/5xx); the raw response body."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        headers = {"Content-Type": content_type} if data is not None else None
        for attempt in range(4):
            async with self._session.request(
                method, self.server + path, data=data, headers=headers
            ) as resp:
                payload = await resp.read()
                if resp.status in ok:
                    return payload
                if resp.status in (429, 500, 502, 503, 504) and attempt < 3:
                    self.retries += 1
                    await asyncio.sleep(0.2 * (attempt + 1))
                    continue
                raise BenchError(
                    f"{method} {path}: HTTP {resp.status}: {payload[:300].decode(errors='replace')}"
                )
        raise AssertionError("unreachable")

    async def get_json(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(await self.request("GET", path))
        return result

    def stream(self, path: str, timeout: float) -> Any:
        """A streaming GET (watch); the caller enters the returned context manager."""
        return self._session.get(
            self.server + path, timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        )


async def create_namespace(kube: Kube, name: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "blockflow-bench"}},
    }
    await kube.request("POST", "/api/v1/namespaces", body)


async def run_pool(count: int, concurrency: int, job: Callable[[int], Awaitable[None]]) -> float:
    """Run job(0..count-1) with at most `concurrency` in flight; the wall time in seconds."""
    indexes = iter(range(count))

    async def worker() -> None:
        for index in indexes:  # shared: each index is taken once
            await job(index)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(max(1, min(concurrency, count))):
            group.create_task(worker())
    return time.perf_counter() - started


REQUEST_LINE = re.compile(r"^apiserver_request_total\{(.*)\}\s+(\S+)")


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


MetricKey = tuple[str, str, str, str, str]  # verb, group, resource, subresource, code


async def scrape_requests(kube: Kube) -> dict[MetricKey, float]:
    """``apiserver_request_total`` summed over the labels that do not matter here."""
    text = (await kube.request("GET", "/metrics")).decode()
    totals: dict[MetricKey, float] = defaultdict(float)
    for line in text.splitlines():
        match = REQUEST_LINE.match(line)
        if not match:
            continue
        labels = dict(LABEL.findall(match.group(1)))
        key = (
            labels.get("verb", ""),
            labels.get("group", ""),
            labels.get("resource", ""),
            labels.get("subresource", ""),
            labels.get("code", ""),
        )
        totals[key] += float(match.group(2))
    return dict(totals)


def metric_delta(
    before: dict[MetricKey, float], after: dict[MetricKey, float]
) -> dict[MetricKey, float]:
    delta = {k: v - before.get(k, 0.0) for k, v in after.items()}
    return {k: v for k, v in delta.items() if v > 0}


class Watch:
    """One watch stream on a namespaced collection; subclasses say what an event means."""

    def __init__(self, kube: Kube, path: str) -> None:
        self.kube = kube
        self.path = path
        self.events = 0
        self.restarts = 0
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        version = await self._list()
        self._task = asyncio.create_task(self._run(version), name=f"watch {self.path}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, BenchError):
                await self._task

    async def _list(self) -> str:
        listing = await self.kube.get_json(self.path)
        for obj in listing.get("items") or []:
            self._seen(obj, None, 0)
        self._changed.set()
        return str(listing["metadata"]["resourceVersion"])

    async def _run(self, version: str) -> None:
        for _ in range(WATCH_RESTARTS + 1):
            try:
                await self._stream(version)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                print(f"  (watch interrupted: {exc!r}; re-listing)", file=sys.stderr)
            self.restarts += 1
            version = await self._list()
        raise BenchError(f"the watch on {self.path} ended {self.restarts} times")

    async def _stream(self, version: str) -> None:
        path = (
            self.path
            + f"?watch=1&allowWatchBookmarks=true&timeoutSeconds=3600&resourceVersion={version}"
        )
        async with self.kube.stream(path, timeout=3700) as resp:
            if resp.status != 200:
                raise ValueError(f"watch: HTTP {resp.status}")
            async for line in resp.content:
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ValueError(f"watch error: {obj.get('message')}")
                if kind in ("BOOKMARK", "DELETED"):
                    continue
                self.events += 1
                self._seen(obj, kind, len(line))
                self._changed.set()

    def _seen(self, obj: dict[str, Any], kind: str | None, size: int) -> None:
        raise NotImplementedError

    async def wait_until(self, done: Callable[[], bool], seconds: float) -> bool:
        """Until done() (re-checked on every event), or False after `seconds`."""
        deadline = time.perf_counter() + seconds
        while not done():
            if self._task is not None and self._task.done():
                self._task.result()  # raises the watch's error
                raise BenchError("the watch stopped")
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return True


class Controller:
    """``python -m controller controller -n <ns> --log-format json`` as a subprocess."""

    def __init__(self, creds: Credentials, namespace: str, log_path: Path) -> None:
        self.creds = creds
        self.namespace = namespace
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.rss_max_kib = 0
        self.rss_samples = 0
        self._sampler: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.creds.kubeconfig)}
        env.pop("BLOCKFLOW_NAMESPACES", None)  # -n decides
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
            )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.returncode is not None:
            raise BenchError(f"the controller exited with {self.proc.returncode}")

    def start_sampling(self, interval: float = 0.05) -> None:
        async def sample() -> None:
            while True:
                rss = proc_status_kib(self.pid, "VmRSS")
                if rss is not None:
                    self.rss_max_kib = max(self.rss_max_kib, rss)
                    self.rss_samples += 1
                await asyncio.sleep(interval)

        self._sampler = asyncio.create_task(sample(), name="rss-sampler")

    async def stop_sampling(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler

    def cpu(self) -> float:
        return cpu_seconds(self.pid) or 0.0

    async def wait_quiet(self, seconds: float = SETTLE_TIMEOUT, window: float = 0.5) -> bool:
        """Until the controller uses < 10% of a core for two windows in a row."""
        deadline = time.perf_counter() + seconds
        quiet = 0
        while time.perf_counter() < deadline:
            self.check_alive()
            cpu0, t0 = self.cpu(), time.perf_counter()
            await asyncio.sleep(window)
            use = (self.cpu() - cpu0) / (time.perf_counter() - t0)
            quiet = quiet + 1 if use < 0.10 else 0
            if quiet >= 2:
                return True
        return False

    async def stop(self) -> None:
        await self.stop_sampling()
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), 10)

    def log_summary(self) -> dict[str, int]:
        """Lines per level in the controller's JSON log."""
        counts: dict[str, int] = defaultdict(int)
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return {}
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                counts["unparsed"] += 1
                continue
            counts[str(record.get("level", "?")) if isinstance(record, dict) else "?"] += 1
        return dict(counts)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class CpuMeter:
    """CPU seconds of a few processes (and of this one) over a phase."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, float] = {}
        self._t0 = 0.0

    def _now(self) -> dict[str, float]:
        values = {"bench": time.process_time(), "machine": machine_busy_seconds()}
        for name, pid in self.pids.items():
            cpu = cpu_seconds(pid)
            if cpu is not None:
                values[name] = cpu
        return values

    def start(self) -> None:
        self._start, self._t0 = self._now(), time.perf_counter()

    def stop(self) -> dict[str, dict[str, float]]:
        wall = time.perf_counter() - self._t0
        end = self._now()
        return {
            name: {"cpu_s": end[name] - self._start[name], "cores": (end[name] - start) / wall}
            for name, start in self._start.items()
            if name in end
        }


async def drop_namespace(
    kube: Kube, namespace: str, plurals: tuple[str, ...], concurrency: int
) -> None:
    """The controller is gone: drop its finalizers (so nothing waits for it), then delete the
    namespace without waiting. Errors are ignored: cleanup never fails a benchmark."""
    with contextlib.suppress(BenchError, aiohttp.ClientError, TimeoutError):
        for plural in plurals:
            base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
            items = (await kube.get_json(base)).get("items") or []
            held = [o["metadata"]["name"] for o in items if o["metadata"].get("finalizers")]

            async def release(i: int, base: str = base, held: list[str] = held) -> None:
                await kube.request(
                    "PATCH",
                    f"{base}/{held[i]}",
                    {"metadata": {"finalizers": None}},
                    content_type="application/merge-patch+json",
                    ok=(200, 404),
                )

            await run_pool(len(held), concurrency, release)
    with contextlib.suppress(BenchError, aiohttp.ClientError, TimeoutError):
        await kube.request("DELETE", f"/api/v1/namespaces/{namespace}", ok=(200, 202))


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """--concurrency and --kubeconfig, as every benchmark here takes them."""
    parser.add_argument(
        "--concurrency", type=int, default=32, help="requests in flight (default 32)"
    )
    parser.add_argument(
        "--kubeconfig",
        default=str(CONTROL_PLANE_DIR / "kubeconfig"),
        help="default: the local control plane's (.local/control-plane/kubeconfig)",
    )


BenchRun = Callable[
    [argparse.Namespace, Credentials, dict[str, Any], Path], Coroutine[Any, Any, int]
]


def bench_main(name: str, args: argparse.Namespace, fields: dict[str, Any], run: BenchRun) -> int:
    """Load the kubeconfig, run the benchmark, write bench/results/<name>-<time>.json (the
    results start with ``fields``); the exit status."""
    kubeconfig = Path(args.kubeconfig).resolve()
    try:
        if not kubeconfig.exists():
            raise BenchError(f"{kubeconfig} does not exist; start the control plane first")
        creds = load_credentials(kubeconfig)
    except BenchError as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = Path(tempfile.mkdtemp(prefix=f"blockflow-bench-{name}-")) / "controller.log"
    results: dict[str, Any] = {
        "started": now_iso(),
        **fields,
        "server": creds.server,
        "python": sys.version.split()[0],
        "env": {k: v for k, v in os.environ.items() if k.startswith("BLOCKFLOW_")},
        "interference": [],
        "controller_log": str(log_path),
    }
    try:
        status = asyncio.run(run(args, creds, results, log_path))
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = 130
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{name}-{stamp}.json"
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"results: {out.relative_to(ROOT)}  controller log: {log_path}")
    return status
