"""A temporary file or staging directory that a SIGKILLed writer left behind is removed by the
next writer of that output; those of running processes and of other hosts are kept."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from eqcg.runtime.atomic import write_text_atomic
from eqcg.runtime.outputs import claims_output
from eqcg.runtime.stale import writer_tag

HOST = socket.gethostname()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def run_killed(code: str, cwd: Path) -> None:
    """Run ``code`` in a Python process that SIGKILLs itself at ``KILL()``."""
    prelude = "import os, signal\nKILL = lambda: os.kill(os.getpid(), signal.SIGKILL)\n"
    done = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    assert done.returncode == -9


def test_the_next_atomic_write_removes_the_temporary_a_killed_writer_left(tmp_path):
    target = tmp_path / "record.json"
    target.write_text("old")
    run_killed("""
        from eqcg.runtime.atomic import atomic_path
        with atomic_path("record.json") as tmp:
            tmp.write_text("half")
            KILL()
    """, tmp_path)
    (left,) = tmp_path.glob(".record.tmp-*.json")
    assert left.name.startswith(f".record.tmp-{HOST}-") and left.read_text() == "half"
    assert target.read_text() == "old"
    write_text_atomic(target, "new")
    assert not left.exists()
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_temporaries_of_running_processes_other_hosts_and_other_files_are_kept(tmp_path):
    kept = [f".record.tmp-{HOST}-{os.getppid()}.json",  # a running process's
            f".record.tmp-elsewhere-{dead_pid()}.json",  # another host's (a shared disk)
            f".record.tmp-{HOST}-{dead_pid()}.txt",  # another file's
            f".other.tmp-{HOST}-{dead_pid()}.json"]
    stale = [f".record.tmp-{HOST}-{dead_pid()}.json", f".record.tmp-{HOST}-{dead_pid()}.json"]
    for name in kept + stale:
        (tmp_path / name).write_text("left")
    write_text_atomic(tmp_path / "record.json", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "record.json"])
    assert (tmp_path / "record.json").read_text() == "new"
    assert writer_tag() == f"{HOST}-{os.getpid()}"


@claims_output("report", "out_dir")
def write_report(out_dir: Path, value: int) -> None:
    (out_dir / "plots").mkdir()
    (out_dir / "plots" / "a.png").write_text(str(value))
    (out_dir / "metrics.json").write_text(json.dumps({"value": value}))


def test_the_next_writer_of_an_output_removes_the_staging_directory_a_killed_one_left(
        tmp_path):
    out = tmp_path / "report"
    run_killed(f"""
        from pathlib import Path
        from eqcg.runtime.outputs import claims_output

        @claims_output("report", "out_dir")
        def write_report(out_dir):
            (out_dir / "metrics.json").write_text("half")
            KILL()

        write_report(Path({str(out)!r}))
    """, tmp_path)
    (staging,) = out.glob(".eqcg-staging-*")
    assert staging.name.startswith(f".eqcg-staging-{HOST}-")
    assert (staging / "metrics.json").read_text() == "half"
    with pytest.warns(UserWarning, match="removed the stale lock"):
        write_report(out, 7)
    assert not staging.exists()
    assert json.loads((out / "metrics.json").read_text()) == {"value": 7}
    assert (out / "plots" / "a.png").read_text() == "7"
    assert sorted(p.name for p in out.iterdir()) == [".eqcg-output.json", "metrics.json",
                                                    "plots"]
