"""The Python half of ``benchmarks/gpu_check.sh``: a timed rollout and the report.

    python benchmarks/gpu_check.py rollout --run RUN --data DATA --steps N --device D \\
        --out DIR --json FILE
    python benchmarks/gpu_check.py report --work WORK --out results/gpu --device D

``rollout`` rolls the run out on its held-out (test) systems (all systems when the run has
none in DATA) and records wall time, steps per second and the peak memory: the largest
``torch.cuda.max_memory_allocated`` on CUDA, the process's peak resident set on the CPU. A
SIGTERM (``timeout``) stops it cleanly: the steps done so far are reported as the status
``time limit``; a rollout that blows up reports ``blew up: <why>``. ``report`` gathers what the
phases left in WORK into one JSON file and one Markdown table under ``--out``, named after the
device, and says plainly when CUDA is absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import resource
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path
from typing import Any

import torch

from eqcg.data.rollout_file import ROLLOUT_FILE, read_rollout_state
from eqcg.models.checkpoint import RunMetadata, load_checkpoint, resolve_checkpoint
from eqcg.runtime.interrupt import Interrupted, interruptible
from eqcg.simulation.rollout import RolloutFailure
from eqcg.simulation.runner import run_rollout

PHASES = ("tests", "benchmark", "rollout")
TIMED_OUT = (124, 137)  # what `timeout` returns for TERM and KILL


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rollout = commands.add_parser("rollout", help="timed rollout of a run's held-out systems")
    rollout.add_argument("--run", type=Path, required=True)
    rollout.add_argument("--data", type=Path, required=True)
    rollout.add_argument("--steps", type=int, required=True)
    rollout.add_argument("--device", required=True)
    rollout.add_argument("--save-every", type=int, default=1000)
    rollout.add_argument("--neighbor-search", default="device", choices=["verlet", "device"],
                         help="rollout.neighbor_search (device: no host sync per step)")
    rollout.add_argument("--out", type=Path, required=True, help="rollout output directory")
    rollout.add_argument("--json", type=Path, required=True, help="where to write the result")
    report = commands.add_parser("report", help="JSON + Markdown of a gpu_check.sh run")
    report.add_argument("--work", type=Path, required=True, help="gpu_check.sh's work folder")
    report.add_argument("--out", type=Path, required=True)
    report.add_argument("--device", required=True, help="the device asked for")
    return parser.parse_args()


def held_out_systems(run: Path, data: Path) -> list[str] | None:
    """The run's test split when it was trained on a dataset of that name, else ``None``."""
    file = resolve_checkpoint(run)
    metadata = RunMetadata.from_dict(load_checkpoint(file).get("metadata", {}), str(file))
    same_name = Path(metadata.dataset or "").parent.name == data.resolve().name
    return list(metadata.test) if same_name else None


def timed_rollout(args: argparse.Namespace) -> dict[str, Any]:
    """Roll out (see the module docstring); what happened, as a JSON-ready dict."""
    device = torch.device(args.device)
    systems = held_out_systems(args.run, args.data) or None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    status, started = "complete", time.perf_counter()
    try:
        with interruptible():
            run_rollout(args.run, args.data, args.out, args.steps, systems=systems,
                        device=args.device, save_every=args.save_every, show_progress=False,
                        flush_seconds=60.0,
                        changes={"neighbor_search": args.neighbor_search})
    except Interrupted:
        status = "time limit"
    except RolloutFailure as failure:
        status = f"blew up: {failure}"
    wall = time.perf_counter() - started
    path = args.out / ROLLOUT_FILE
    header, state = read_rollout_state(path) if path.is_file() else (None, None)
    steps = state.step if state is not None else 0
    return {
        "steps_requested": args.steps, "steps_done": steps, "status": status,
        "neighbor_search": args.neighbor_search,
        "systems": list(header.names) if header is not None else [],
        "beads": int(header.ptr[-1]) if header is not None else 0,
        "wall_seconds": wall, "rollout_seconds": state.wall_seconds if state else 0.0,
        "steps_per_second": steps / state.wall_seconds if state and state.wall_seconds else 0.0,
        **peak_memory(device),
    }


def peak_memory(device: torch.device) -> dict[str, Any]:
    """The peak memory of this process on ``device`` and what it measures."""
    if device.type == "cuda":
        return {"peak_memory_bytes": torch.cuda.max_memory_allocated(device),
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "peak_memory_kind": "process peak RSS (CPU)"}


def device_info(asked: str) -> dict[str, Any]:
    """Name of the device asked for, whether CUDA is there, and the versions that matter."""
    cuda = torch.cuda.is_available()
    on_cuda = asked.startswith("cuda") and cuda
    name = torch.cuda.get_device_name(torch.device(asked)) if on_cuda else f"CPU: {cpu_name()}"
    note = ("" if cuda else
            f"CUDA absent: torch {torch.__version__} sees no GPU, so every phase ran on the CPU "
            "(CI-sized); no GPU number here")
    return {"asked": asked, "name": name, "cuda_available": cuda,
            "cuda_version": torch.version.cuda, "torch": torch.__version__,
            "python": platform.python_version(), "note": note}


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def phases(work: Path) -> dict[str, dict[str, Any]]:
    """``{phase: {exit_code, seconds, status}}`` from gpu_check.sh's ``phases.tsv``."""
    found = {}
    table = work / "phases.tsv"
    for line in table.read_text().splitlines() if table.is_file() else []:
        name, code, seconds = line.split("\t")
        code = int(code)
        status = "ok" if code == 0 else "timed out" if code in TIMED_OUT else f"failed ({code})"
        found[name] = {"exit_code": code, "seconds": float(seconds), "status": status}
    return {name: found.get(name, {"status": "not run"}) for name in PHASES}


def junit_counts(junit: Path) -> dict[str, int] | None:
    """Passed, failed, skipped and error counts of a pytest JUnit XML file."""
    if not junit.is_file():
        return None
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed, errors, skipped = (int(suite.get(k, 0))
                                      for k in ("tests", "failures", "errors", "skipped"))
    return {"passed": total - failed - errors - skipped, "failed": failed, "errors": errors,
            "skipped": skipped}


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def benchmark_rows(benchmark: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The learned-vs-LAMMPS results as rows: variant, refinement, systems, s/step, speed-up."""
    if benchmark is None:
        return []
    return [{"variant": r["variant"], "refinement": r["refinement"], "systems": r["systems"],
             "seconds_per_step": r["seconds_per_step"], "speedup": r["speedup"]}
            for r in benchmark["results"].values()]


def slug(name: str) -> str:
    """A file-name form of a device name."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:60]


def build_report(work: Path, asked: str) -> dict[str, Any]:
    """Everything one gpu_check.sh run measured."""
    benchmark = read_json(work / "learned_vs_lammps.json")
    return {
        "check": "gpu_check", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": device_info(asked), "phases": phases(work),
        "tests": junit_counts(work / "tests.xml"),
        "learned_vs_lammps": {"unit": benchmark["unit"], "rows": benchmark_rows(benchmark)}
        if benchmark else None,
        "rollout": read_json(work / "rollout.json"),
    }


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: device, phases, tests, benchmark and rollout tables."""
    device = report["device"]
    lines = [f"# GPU check: {device['name']}", ""]
    if device["note"]:
        lines += [f"**{device['note']}.**", ""]
    lines += [f"torch {device['torch']} (CUDA {device['cuda_version']}), Python "
              f"{device['python']}, device asked: `{device['asked']}`; {report['created']}", "",
              "| phase | status | seconds |", "|---|---|---|"]
    for name, phase in report["phases"].items():
        lines.append(f"| {name} | {phase['status']} | {phase.get('seconds', 0):.1f} |")
    if tests := report["tests"]:
        lines += ["", "Tests: " + ", ".join(f"{n} {k}" for k, n in tests.items())]
    if bench := report["learned_vs_lammps"]:
        lines += ["", "| simulator | refinement | systems | wall s/step | x LAMMPS |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {r['refinement']} | {r['systems']} | "
                  f"{r['seconds_per_step']:.4g} | {r['speedup']:.3g} |" for r in bench["rows"]]
    if rollout := report["rollout"]:
        lines += ["", "| rollout | neighbour search | steps done / asked | systems | beads | "
                  "steps/s | peak memory |", "|---|---|---|---|---|---|---|",
                  f"| {rollout['status']} | {rollout['neighbor_search']} | "
                  f"{rollout['steps_done']} / "
                  f"{rollout['steps_requested']} | {len(rollout['systems'])} | "
                  f"{rollout['beads']} | {rollout['steps_per_second']:.3g} | "
                  f"{rollout['peak_memory_bytes'] / 2**20:.0f} MiB "
                  f"({rollout['peak_memory_kind']}) |"]
    return "\n".join(lines) + "\n"


def write_report(args: argparse.Namespace) -> None:
    report = build_report(args.work, args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"gpu_check-{slug(report['device']['name'])}"
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    text = markdown(report)
    stem.with_suffix(".md").write_text(text)
    print(text, end="")
    print(f"wrote {stem}.json and {stem}.md")


def main() -> None:
    args = parse_args()
    if args.command == "rollout":
        args.json.write_text(json.dumps(timed_rollout(args), indent=2) + "\n")
    else:
        write_report(args)


if __name__ == "__main__":
    main()
