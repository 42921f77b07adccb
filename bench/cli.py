"""The command line against kubectl: what a read command costs, as a ratio, in one run.

Run by hand against the local control plane (``hack/control-plane.sh up``, CRDs applied)::

    .venv/bin/python bench/cli.py [--runs 50] [--samples 30] [--kubectl PATH]

1. a fresh namespace gets ``--runs`` WorkflowRuns (of a workflow that does not exist: no
   controller runs, the objects are only read);
2. the package's bytecode is compiled first, as ``pip install`` does (an editable checkout
   under ``PYTHONDONTWRITEBYTECODE`` would otherwise compile the CLI at every start);
3. each pair of commands runs ``--samples`` times, interleaved (CLI, kubectl, CLI, …) so both
   see the same machine: ``blockflow run list -n NS`` against ``kubectl get wfr -n NS``, and
   ``blockflow run get NAME -n NS`` against ``kubectl get wfr NAME -n NS``; wall time of each
   process, from start to exit, output checked (every run listed);
4. prints p50 and p90 of each and the ratio of the medians (target: ≤ 1.5), and writes
   ``bench/results/cli-<timestamp>.json``.

The console script measured is ``.venv/bin/blockflow`` (or ``--blockflow``); kubectl is the one
built beside the local API server when there is one, else the first on PATH. The exit status
is non-zero only when something is broken (a command failed or listed the wrong runs).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.5


class BenchError(Exception):
    pass


def _kubeconfig(given: str | None) -> str:
    if given:
        return given
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    plane = Path(os.environ.get("BLOCKFLOW_CONTROL_PLANE_DIR") or ROOT / ".local/control-plane")
    if (plane / "kubeconfig").is_file():
        return str(plane / "kubeconfig")
    raise BenchError("no kubeconfig: start the local control plane (hack/control-plane.sh up)")


def _kubectl(given: str | None) -> str:
    if given:
        return given
    plane = Path(os.environ.get("BLOCKFLOW_CONTROL_PLANE_DIR") or ROOT / ".local/control-plane")
    try:
        state = json.loads((plane / "state.json").read_text())
        built = Path(state.get("binaries", {}).get("kubectl", ""))
        if built.is_file():
            return str(built)
    except (OSError, ValueError):
        pass
    found = shutil.which("kubectl")
    if found is None:
        raise BenchError("no kubectl: pass --kubectl or start the local control plane")
    return found


def _run(command: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        command, input=stdin, capture_output=True, text=True, env=env, check=False, timeout=60
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr.strip()}")
    return seconds, done.stdout


def _pair(
    label: str,
    cli: list[str],
    kubectl: list[str],
    env: dict[str, str],
    samples: int,
    check: Any,
) -> dict[str, Any]:
    times: dict[str, list[float]] = {"cli": [], "kubectl": []}
    for command in (cli, kubectl, cli, kubectl):  # warm the page cache and the API server
        _run(command, env)
    for _ in range(samples):
        for side, command in (("cli", cli), ("kubectl", kubectl)):
            seconds, out = _run(command, env)
            check(side, out)
            times[side].append(seconds)
    result: dict[str, Any] = {"label": label, "cli": " ".join(cli), "kubectl": " ".join(kubectl)}
    for side, values in times.items():
        ordered = sorted(values)
        result[side] = {
            "p50_ms": statistics.median(ordered) * 1000,
            "p90_ms": ordered[int(0.9 * (len(ordered) - 1))] * 1000,
            "samples_ms": [round(v * 1000, 1) for v in values],
        }
    result["ratio"] = result["cli"]["p50_ms"] / result["kubectl"]["p50_ms"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="WorkflowRuns in the namespace")
    parser.add_argument("--samples", type=int, default=30, help="runs of each command")
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else the local plane's")
    parser.add_argument("--kubectl", help="default: the local plane's kubectl, else PATH's")
    parser.add_argument("--blockflow", default=str(Path(sys.prefix) / "bin" / "blockflow"))
    args = parser.parse_args()
    try:
        kubeconfig, kubectl = _kubeconfig(args.kubeconfig), _kubectl(args.kubectl)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    env = {**os.environ, "KUBECONFIG": kubeconfig}
    env.pop("BLOCKFLOW_URL", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "controller")], check=True)
    namespace = f"bench-cli-{secrets.token_hex(3)}"
    names = [f"bench-{i:04d}" for i in range(args.runs)]
    try:
        _run([kubectl, "create", "namespace", namespace], env)
        items = [
            {
                "apiVersion": "blockflow.dev/v1alpha1",
                "kind": "WorkflowRun",
                "metadata": {"name": name, "labels": {"blockflow.dev/workflow": "bench"}},
                "spec": {"workflowRef": {"name": "bench"}},
            }
            for name in names
        ]
        _run(
            [kubectl, "create", "-n", namespace, "-f", "-"],
            env,
            stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )

        def every_run(side: str, out: str) -> None:
            listed = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
            if listed != names:
                raise BenchError(f"{side} listed {len(listed)} runs, not the {len(names)} made")

        def one_run(side: str, out: str) -> None:
            if names[0] not in out:
                raise BenchError(f"{side} did not show {names[0]}")

        results = [
            _pair(
                f"list {args.runs} runs",
                [args.blockflow, "run", "list", "-n", namespace],
                [kubectl, "get", "wfr", "-n", namespace],
                env,
                args.samples,
                every_run,
            ),
            _pair(
                "get one run",
                [args.blockflow, "run", "get", names[0], "-n", namespace],
                [kubectl, "get", "wfr", names[0], "-n", namespace],
                env,
                args.samples,
                one_run,
            ),
        ]
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        subprocess.run(
            [kubectl, "delete", "namespace", namespace, "--wait=false"],
            env=env,
            capture_output=True,
            check=False,
        )
    print(f"| command | blockflow p50 / p90 | kubectl p50 / p90 | ratio (target ≤ {TARGET}) |")
    print("|---|---|---|---|")
    for r in results:
        print(
            f"| {r['label']} | {r['cli']['p50_ms']:.0f} / {r['cli']['p90_ms']:.0f} ms "
            f"| {r['kubectl']['p50_ms']:.0f} / {r['kubectl']['p90_ms']:.0f} ms "
            f"| {r['ratio']:.2f} |"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"cli-{stamp}.json"
    path.write_text(
        json.dumps(
            {"runs": args.runs, "samples": args.samples, "kubectl": kubectl, "results": results},
            indent=2,
        )
    )
    print(f"results: {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
