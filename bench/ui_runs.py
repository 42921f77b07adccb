"""The web page with many runs: how long its views take with N WorkflowRuns in one namespace.

Run by hand against the local control plane (``hack/control-plane.sh up``, CRDs applied)::

    .venv/bin/python bench/ui_runs.py [--runs 10000] [--concurrency 32] [--samples 20]

1. the controller (``python -m controller controller -n <ns>``, its page on a free port) watches a
   fresh namespace; N runs of a workflow that does not exist are created at the given
   concurrency (each fails at once, saying why; no history limit removes them, as limits
   belong to a workflow) — the creation rate is reported;
2. once the page lists all N (its own "N runs match"), each view is requested ``--samples``
   times, one at a time, as the kubeconfig's user (``Authorization: Bearer``): the run list's
   first page, a filtered page (state and workflow), a search, a page 20 pages deep (reached
   by following "Older" links: paging is by key), the Workflows and Approvals pages, and one
   run's page; p50 and p95 of each;
3. baseline: what the page did before it paged on the server — one ``GET`` of every run of
   the namespace from the API server (time and bytes);
4. the controller's RSS with the N runs indexed.

Prints a Markdown table and writes ``bench/results/ui-runs-<timestamp>.json``. The exit status
is non-zero only when something is broken (runs never listed, a view answered an error).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp

# The shared harness (this file runs as a script: bench/ is on sys.path).
from harness import (
    GROUP,
    VERSION,
    BenchError,
    Controller,
    Credentials,
    Kube,
    add_common_arguments,
    bench_main,
    create_namespace,
    drop_namespace,
    percentile,
    proc_status_kib,
    run_pool,
)

LIST_TIMEOUT = 900.0
_MATCH = re.compile(r"([\d,]+) runs? match")
_OLDER = re.compile(r'href="([^"]*before=[^"]*)"[^>]*data-page="page-older"')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkflowRun",
        "metadata": {"name": name},
        "spec": {"workflowRef": {"name": "ghost"}, "input": {"order": name}},
    }


class PageClient:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self._session = aiohttp.ClientSession(
            headers={"Authorization": f"Bearer {token}"},
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def close(self) -> None:
        await self._session.close()

    async def get(self, path: str) -> tuple[float, str]:
        """Seconds to the whole page, and the page."""
        started = time.perf_counter()
        async with self._session.get(self.base + path) as response:
            text = await response.text()
            if response.status != 200:
                raise BenchError(f"GET {path}: HTTP {response.status}: {text[:300]}")
        return time.perf_counter() - started, text


async def _matching(page: PageClient, path: str) -> int:
    try:
        _, text = await page.get(path)
    except (BenchError, aiohttp.ClientError):
        return -1
    found = _MATCH.search(text)
    return int(found.group(1).replace(",", "")) if found else 0


async def _until_listed(
    page: PageClient, namespace: str, count: int, controller: Controller
) -> float:
    """Until the page lists ``count`` failed runs; the seconds it took."""
    started = time.perf_counter()
    path = f"/ui/namespaces/{namespace}/runs?state=failed"
    while time.perf_counter() - started < LIST_TIMEOUT:
        controller.check_alive()
        if await _matching(page, path) >= count:
            return time.perf_counter() - started
        await asyncio.sleep(1.0)
    raise BenchError(f"the page did not list {count} failed runs within {LIST_TIMEOUT:.0f} s")


async def _deep(page: PageClient, namespace: str, depth: int) -> str:
    """The path of the page ``depth`` pages deep (by following Older links)."""
    path = f"/ui/namespaces/{namespace}/runs"
    for _ in range(depth):
        _, text = await page.get(path)
        found = _OLDER.search(text)
        if not found:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


async def _views(page: PageClient, namespace: str, samples: int, runs: int) -> dict[str, Any]:
    ns = f"/ui/namespaces/{namespace}"
    views = {
        "runs: first page": f"{ns}/runs",
        "runs: state + workflow": f"{ns}/runs?state=failed&workflow=ghost",
        "runs: search": f"{ns}/runs?q=run-0001",
        "runs: 20 pages deep": await _deep(page, namespace, 20),
        "runs: 200 a page": f"{ns}/runs?limit=200",
        "workflows": f"{ns}/workflows",
        "approvals": f"{ns}/approvals",
        "one run": f"{ns}/runs/run-{runs // 2:05d}",
    }
    out: dict[str, Any] = {}
    for label, path in views.items():
        times = []
        for _ in range(samples):
            seconds, _ = await page.get(path)
            times.append(seconds * 1000)
        out[label] = {
            "path": path,
            "p50_ms": percentile(times, 50),
            "p95_ms": percentile(times, 95),
        }
    return out


async def run(
    args: argparse.Namespace, creds: Credentials, results: dict[str, Any], log_path: Path
) -> int:
    kube = Kube(creds, args.concurrency)
    namespace = f"bench-ui-{secrets.token_hex(3)}"
    port = _free_port()
    os.environ["BLOCKFLOW_HTTP_PORT"] = str(port)
    controller = Controller(creds, namespace, log_path)
    page = PageClient(f"http://127.0.0.1:{port}", creds.token)
    status = 0
    try:
        await create_namespace(kube, namespace)
        await controller.start()
        base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/workflowruns"

        async def create(i: int) -> None:
            await kube.request("POST", base, _run(f"run-{i:05d}"))

        created = await run_pool(args.runs, args.concurrency, create)
        results["create_seconds"] = created
        results["creates_per_second"] = args.runs / created
        print(f"{args.runs} runs created in {created:.1f} s ({args.runs / created:.0f}/s)")
        listed = await _until_listed(page, namespace, args.runs, controller)
        results["listed_after_seconds"] = listed
        print(f"all {args.runs} failed and listed by the page {listed:.1f} s after the last create")
        await controller.wait_quiet()

        views = await _views(page, namespace, args.samples, args.runs)
        results["views"] = views
        started = time.perf_counter()
        body = await kube.request("GET", base)
        results["baseline_list_all"] = {
            "ms": (time.perf_counter() - started) * 1000,
            "bytes": len(body),
        }
        rss = proc_status_kib(controller.pid, "VmRSS")
        results["controller_rss_mib"] = None if rss is None else rss / 1024

        print(f"\n| view ({args.runs:,} runs) | p50 ms | p95 ms |\n|---|---:|---:|")
        for label, figures in views.items():
            print(f"| {label} | {figures['p50_ms']:.0f} | {figures['p95_ms']:.0f} |")
        base_line = results["baseline_list_all"]
        print(
            f"| baseline: GET every run from the API server ({base_line['bytes'] / 2**20:.1f} "
            f"MiB) | {base_line['ms']:.0f} | |"
        )
        if rss is not None:
            print(f"\ncontroller RSS with {args.runs:,} runs: {rss / 1024:.0f} MiB")
    except BenchError as exc:
        print(f"FAILED: {exc}")
        print(controller.log_tail())
        results["error"] = str(exc)
        status = 1
    finally:
        await page.close()
        await controller.stop()
        await drop_namespace(kube, namespace, ("workflowruns",), args.concurrency)
        await kube.close()
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000, help="runs (default 10000)")
    parser.add_argument("--samples", type=int, default=20, help="requests per view (20)")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.runs < 1 or args.samples < 1 or args.concurrency < 1:
        parser.error("--runs, --samples and --concurrency must be at least 1")
    fields = {"runs": args.runs, "samples": args.samples, "concurrency": args.concurrency}
    return bench_main("ui-runs", args, fields, run)


if __name__ == "__main__":
    raise SystemExit(main())
