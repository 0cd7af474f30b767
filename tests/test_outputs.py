"""Outputs nobody can destroy (issue 20): every output directory says what it holds and who
writes it, a failed or interrupted write leaves the previous output byte-identical, and every
error reaching the command line is one named line."""

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import h5py
import pytest

import eqcg.runtime.atomic
from eqcg.commands import cli
from eqcg.commands.cli import main
from eqcg.data.store import load_dataset, system_digest
from eqcg.errors import DataError, FileSystemError, OutputError, SimulationError
from eqcg.runtime.outputs import (
    LOCK_FILE,
    MARKER_FILE,
    check_output,
    check_output_file,
    claim_output,
    claims_output,
    output_kind,
)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def ingest_argv(polymer_data: Path, out: Path, *extra: str) -> list[str]:
    chain = polymer_data / "lammps" / "chain000"
    return ["ingest", "--topology", str(chain / "chain.data"), "--trajectory",
            str(chain / "traj.dump"), "--units", "lj", "--timestep", "0.01", "--out", str(out),
            *extra]


@pytest.fixture
def dataset_dir(polymer_data, tmp_path) -> Path:
    """A dataset written by ``eqcg ingest``: the previous output the tests try to damage."""
    out = tmp_path / "data"
    assert main(ingest_argv(polymer_data, out)) == 0
    return out


# --- ownership ----------------------------------------------------------------------------

def test_a_claim_refuses_files_other_kinds_and_finished_outputs(tmp_path):
    (tmp_path / "file").write_text("keep")
    with pytest.raises(OutputError, match=r"^--out .*file: it is an existing file, not a "
                                          "directory for the report$"):
        claim_output(tmp_path / "file", "report").__enter__()
    legacy = tmp_path / "legacy"  # written before markers: known by its files
    (legacy / "checkpoints").mkdir(parents=True)
    assert output_kind(legacy) == "run"
    with pytest.raises(OutputError) as caught, claim_output(legacy, "rollout"):
        pass
    assert str(caught.value) == (f"--out {legacy}: holds a run, not a rollout; choose another "
                                 "--out")
    with claim_output(tmp_path / "new", "report") as new:
        (new / "metrics.json").write_text("{}")
    assert json.loads((new / MARKER_FILE).read_text())["kind"] == "report"
    assert not (new / LOCK_FILE).exists()
    with pytest.raises(OutputError) as caught, claim_output(new, "report"):
        pass
    assert str(caught.value) == (f"--out {new}: already holds a report (metrics.json); pass "
                                 "--overwrite to replace it, or choose another --out")
    with claim_output(new, "report", overwrite=True):
        pass
    with pytest.raises(OutputError, match="holds a report, not an ablation"), \
            claim_output(new, "ablation"):
        pass


def test_a_directory_of_a_users_own_files_needs_overwrite(tmp_path):
    """Files eqcg did not mark as its output (a user's notes named like ours) are refused;
    with --overwrite the claim goes ahead."""
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "report.md").write_text("my own notes")
    (notes / "run.json").write_text("{}")
    with pytest.raises(OutputError, match=(
            rf"--out {notes}: holds files eqcg did not mark as its output \(report.md, "
            r"run.json\); pass --overwrite to write the report into it anyway")):
        with claim_output(notes, "report"):
            pass
    with pytest.raises(OutputError, match=rf"--out {notes}: holds a report, not a rollout"):
        with claim_output(notes, "rollout"):  # report.md: taken for an older eqcg's report
            pass
    (notes / "report.md").rename(notes / "notes.md")
    with pytest.raises(OutputError, match=(
            rf"--out {notes}: holds files eqcg did not mark as its output \(notes.md, "
            r"run.json\); pass --overwrite to write the rollout into it anyway")):
        with claim_output(notes, "rollout"):
            pass
    assert (notes / "notes.md").read_text() == "my own notes"
    with claim_output(notes, "report", overwrite=True):
        pass
    with claim_output(tmp_path / "empty", "report"):  # an empty or new directory is fine
        pass


def test_a_single_output_file_is_checked_like_a_directory(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=rf"--out {tmp_path}: is a directory; give the name"):
        check_output_file(tmp_path)
    with pytest.raises(OutputError, match=rf"{tmp_path}/afile is an existing file, not a "
                                          r"directory"):
        check_output_file(tmp_path / "afile" / "table.json")
    with pytest.raises(OutputError, match=r"exists already; pass --overwrite to replace it"):
        check_output_file(tmp_path / "afile")
    assert check_output_file(tmp_path / "afile", overwrite=True) == tmp_path / "afile"
    dataset = tmp_path / "dataset.h5"
    dataset.write_bytes(b"precious")
    assert main(["check-equivariance", "configs/polymer_equivariant.yaml",
                 "--out", str(dataset)]) == 2
    assert last_error(capsys) == (f"eqcg check-equivariance: error: --out {dataset}: exists "
                                  "already; pass --overwrite to replace it, or choose another "
                                  "--out")
    assert dataset.read_bytes() == b"precious"


def _previous_rollout(directory: Path) -> dict[str, bytes]:
    with claim_output(directory, "rollout"):
        (directory / "rollout.h5").write_bytes(b"old frames")
        (directory / "run.json").write_text("{}")
    return snapshot(directory)


@pytest.mark.parametrize("failure, kept", [
    (OSError(errno.ENOSPC, "No space left on device"), "previous"),
    (FileSystemError("writing: no space left on device"), "previous"),
    (OutputError("refused before writing"), "previous"),
    (KeyboardInterrupt(), "new"),
    (SimulationError("blew up at step 3"), "new"),
])
def test_overwrite_keeps_the_previous_output_until_it_is_replaced(tmp_path, failure, kept):
    """A failed write brings the previous files back; an end that leaves a new output of its
    own (a blown-up or interrupted rollout) keeps that; no hidden folder is left either way."""
    out = tmp_path / "rollout"
    before = _previous_rollout(out)
    with pytest.raises(type(failure)):
        with claim_output(out, "rollout", overwrite=True):
            assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == []
            if not isinstance(failure, OutputError):
                (out / "rollout.h5").write_bytes(b"new frames")
                (out / "rollout.pdb").write_text("new")
            raise failure
    after = snapshot(out)
    if kept == "previous":
        assert after == before
    else:
        assert after["rollout.h5"] == b"new frames" and "run.json" not in after
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [MARKER_FILE]


def test_a_finished_overwrite_removes_the_previous_output(tmp_path):
    out = tmp_path / "rollout"
    _previous_rollout(out)
    with claim_output(out, "rollout", overwrite=True):
        (out / "rollout.h5").write_bytes(b"new frames")
    assert snapshot(out) == {MARKER_FILE: (out / MARKER_FILE).read_bytes(),
                             "rollout.h5": b"new frames"}


def test_a_write_error_without_a_file_name_names_the_output(tmp_path):
    @claims_output("report", "out")
    def write(out: Path, overwrite: bool = False) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(FileSystemError, match=rf"^writing the report into {tmp_path}/rep: no "
                                              r"space left on device$"):
        write(tmp_path / "rep")


def test_a_failed_command_leaves_no_directory_it_created(tmp_path):
    with pytest.raises(DataError), claim_output(tmp_path / "a" / "b", "dataset"):
        raise DataError("bad input")
    assert not (tmp_path / "a" / "b").exists()


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path):
    out = tmp_path / "rollout"
    other = textwrap.dedent(f"""
        from eqcg.runtime.outputs import claim_output
        with claim_output({str(out)!r}, "rollout", overwrite=True):
            pass
    """)
    with claim_output(out, "rollout"):
        holder = json.loads((out / LOCK_FILE).read_text())
        assert (holder["pid"], holder["host"]) == (os.getpid(), socket.gethostname())
        with pytest.raises(OutputError) as caught, claim_output(out, "rollout"):
            pass
        assert str(caught.value).startswith(
            f"--out {out}: is being written by process {os.getpid()} on "
            f"{socket.gethostname()} (")
        assert str(caught.value).endswith(
            f"); wait for it to finish or choose another --out (if no eqcg command is writing "
            f"there, remove {out / LOCK_FILE})")
        second = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True)
        assert second.returncode == 1
        assert f"OutputError: --out {out}: is being written by process {os.getpid()}" in \
            second.stderr
    assert not (out / LOCK_FILE).exists()
    assert subprocess.run([sys.executable, "-c", other]).returncode == 0


def test_a_dead_writers_lock_is_reported_and_taken_over(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    (out / LOCK_FILE).write_text(json.dumps({"pid": int(dead), "host": socket.gethostname(),
                                             "command": "eqcg evaluate", "since": "then"}))
    with pytest.warns(UserWarning, match=rf"removed the stale lock of process {dead} on "
                                         rf".*\(eqcg evaluate, since then\), which is no longer "
                                         "running; its output may be incomplete"), \
            claim_output(out, "report"):
        pass
    (out / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(OutputError, match="is being written by process 1 on elsewhere"), \
            claim_output(out, "report"):
        pass


# --- ingest: names, finished outputs, failed writes ---------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("poly/chain0", "contains a path separator ('/' or '\\'); it names a file or HDF5 group"),
    ("..", "is a relative directory"),
    ("-x", "starts with '-' (it would read as a command-line option)"),
    ("a\tb", "contains a control or unprintable character"),
])
def test_ingest_refuses_a_name_that_is_no_single_safe_component(polymer_data, dataset_dir,
                                                                 capsys, name, problem):
    before = snapshot(dataset_dir)
    assert main(ingest_argv(polymer_data, dataset_dir, f"--name={name}", "--overwrite")) == 2
    assert last_error(capsys) == (f"eqcg ingest: error: system name (--name) {name!r}: "
                                  f"{problem}; use letters, digits, '.', '_' or '-'")
    assert snapshot(dataset_dir) == before


def test_ingest_over_a_dataset_needs_overwrite(polymer_data, dataset_dir, capsys):
    before = snapshot(dataset_dir)
    assert main(ingest_argv(polymer_data, dataset_dir)) == 2
    assert last_error(capsys) == (f"eqcg ingest: error: --out {dataset_dir}: already holds a "
                                  "dataset (dataset.h5); pass --overwrite to replace it, or "
                                  "choose another --out")
    assert snapshot(dataset_dir) == before
    assert main(ingest_argv(polymer_data, dataset_dir, "--overwrite", "--name", "renamed")) == 0
    with load_dataset(dataset_dir) as dataset:
        assert dataset.names == ["renamed"]
        system = dataset["renamed"]
        assert dataset.content_hash != ""
        assert system_digest(system)  # the stored hash is the one computed from the file
        assert dataset._file.attrs["content_hash"] == dataset.content_hash


class _FailingFile:
    """A raw file whose writes fail with ``errno`` after the first ``allowed`` ones."""

    def __init__(self, raw, number: int, allowed: int):
        self._raw, self._number, self._allowed = raw, number, allowed

    def write(self, data):
        self._allowed -= 1
        if self._allowed < 0:
            raise OSError(self._number, os.strerror(self._number))
        return self._raw.write(data)

    def __getattr__(self, name):
        return getattr(self._raw, name)


@pytest.mark.parametrize("number, reason", [(errno.ENOSPC, "no space left on device"),
                                            (errno.EROFS, "read-only file system")])
@pytest.mark.parametrize("site", ["hdf5 write", "fsync", "run record"])
def test_a_failed_write_in_ingest_is_named_and_keeps_the_previous_dataset(
        polymer_data, dataset_dir, capsys, monkeypatch, number, reason, site):
    before = snapshot(dataset_dir)
    if site == "hdf5 write":
        real_open = open
        monkeypatch.setattr(eqcg.runtime.atomic, "open", lambda *a, **k: _FailingFile(
            real_open(*a, **k), number, allowed=3), raising=False)
        expected = f"writing the dataset {dataset_dir}/dataset.h5: {reason}"
    elif site == "fsync":
        def fail(descriptor):
            raise OSError(number, os.strerror(number))
        monkeypatch.setattr(os, "fsync", fail)
        expected = f"writing the run record {dataset_dir}/run.json: {reason}"
    else:
        real_write_text = Path.write_text

        def write_text(path, text, *args, **kwargs):
            if path.name.startswith(".run.tmp"):
                raise OSError(number, os.strerror(number), str(path))
            return real_write_text(path, text, *args, **kwargs)
        monkeypatch.setattr(Path, "write_text", write_text)
        expected = f"writing the run record {dataset_dir}/run.json: {reason}"
    assert main(ingest_argv(polymer_data, dataset_dir, "--overwrite", "--name", "new")) == 2
    assert last_error(capsys) == f"eqcg ingest: error: {expected}"
    assert snapshot(dataset_dir) == before  # no temporary file, lock or changed byte


def test_a_full_disk_during_ingest_is_a_named_error_not_a_crash(polymer_data, dataset_dir):
    """HDF5 crashes (exit 139) closing a file whose writes failed; eqcg's writes never do."""
    before = snapshot(dataset_dir)
    limit = len((dataset_dir / "dataset.h5").read_bytes()) // 2

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([sys.executable, "-m", "eqcg",
                           *ingest_argv(polymer_data, dataset_dir, "--overwrite")],
                          capture_output=True, text=True, preexec_fn=limited)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"eqcg ingest: error: writing the dataset {dataset_dir}/dataset.h5: file too large "
        "(over the file-size limit)"]
    assert snapshot(dataset_dir) == before


@pytest.mark.usefixtures("sigint_delivered")
def test_ctrl_c_while_ingest_writes_keeps_the_previous_dataset(polymer_data, dataset_dir,
                                                               capsys, monkeypatch):
    before = snapshot(dataset_dir)
    import eqcg.data.store as store

    real = store.write_system_group

    def write_and_interrupt(group, system, **options):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside the HDF5 write
        real(group, system, **options)
    monkeypatch.setattr(store, "write_system_group", write_and_interrupt)
    assert main(ingest_argv(polymer_data, dataset_dir, "--overwrite")) == 130
    assert last_error(capsys) == "eqcg ingest: interrupted by SIGINT"
    assert snapshot(dataset_dir) == before


# --- damaged inputs of our own formats ----------------------------------------------------

def test_a_dataset_with_damaged_metadata_is_named_and_its_file_closed(dataset_dir, tmp_path):
    path = tmp_path / "cut" / "dataset.h5"
    path.parent.mkdir()
    path.write_bytes((dataset_dir / "dataset.h5").read_bytes())
    with h5py.File(path, "a") as f:
        f["systems/chain"].attrs["attrs_json"] = '{"lammps_wall_sec'
    with pytest.raises(DataError, match=r"dataset.h5: system 'chain': damaged metadata "
                                        r"\(Unterminated string"):
        load_dataset(path)
    with h5py.File(path, "w"):  # HDF5 refuses to truncate a file that is still open
        pass


# --- the error boundary and option ranges -------------------------------------------------

def test_no_traceback_reaches_the_user(monkeypatch, capsys):
    import eqcg.commands.info

    def broken(path):
        raise RuntimeError("something eqcg did not expect")
    monkeypatch.setattr(eqcg.commands.info, "describe", broken)
    assert main(["info", "anything"]) == 3
    assert capsys.readouterr().err.strip().splitlines() == [
        "eqcg info: internal error: RuntimeError: something eqcg did not expect (a bug in eqcg: "
        "please report it; EQCG_TRACEBACK=1 shows where it happened)"]

    def unwritable(path):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), "x" * 300)
    monkeypatch.setattr(eqcg.commands.info, "describe", unwritable)
    assert main(["info", "anything"]) == 2
    assert last_error(capsys) == f"eqcg info: error: {'x' * 300}: file name too long"


@pytest.mark.parametrize("argv, option, message", [
    (["evaluate", "R", "--reference", "D", "--out", "O", "--collision-threshold", "-1"],
     "--collision-threshold", "must be a finite number > 0, got -1"),
    (["evaluate", "R", "--reference", "D", "--out", "O", "--collision-threshold", "nan"],
     "--collision-threshold", "must be a finite number > 0, got nan"),
    (["check-equivariance", "R", "--trials", "0"], "--trials", "must be an integer >= 1, got 0"),
    (["check-equivariance", "R", "--trials", "-2"], "--trials",
     "must be an integer >= 1, got -2"),
    (["rollout", "R", "--data", "D", "--out", "O", "--steps", "3", "--seed", "-1"], "--seed",
     "must be an integer >= 0, got -1"),
    (["rollout", "R", "--data", "D", "--out", "O", "--steps", "3", "--step-size", "inf"],
     "--step-size", "must be a finite number > 0, got inf"),
    (["generate", "polymer", "--out", "O", "--n-systems", "0"], "--n-systems",
     "must be an integer >= 1, got 0"),
    (["ingest", "--topology", "T", "--trajectory", "J", "--out", "O", "--timestep", "0"],
     "--timestep", "must be a finite number > 0, got 0"),
    (["simulate", "R", "--generate-history", "polymer", "--steps", "2", "--out", "O",
      "--history-seed", "-3"], "--history-seed", "must be an integer >= 0, got -3"),
    (["train", "C", "--data", "D", "--out", "O", "--max-steps", "1.5"], "--max-steps",
     "must be an integer >= 1, got 1.5"),
])
def test_every_numeric_option_is_checked_before_any_work(tmp_path, capsys, monkeypatch, argv,
                                                         option, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert last_error(capsys) == f"eqcg {argv[0]}: error: argument {option}: {message}"
    assert list(tmp_path.iterdir()) == []


def test_after_a_failed_write_hdf5_sees_the_file_it_believes_it_wrote(tmp_path, monkeypatch):
    """Discarded bytes still count for positions and the file's end (HDF5 checks addresses
    against it) and read back as zeros."""
    real_open = open
    monkeypatch.setattr(eqcg.runtime.atomic, "open", lambda *a, **k: _FailingFile(
        real_open(*a, **k), errno.ENOSPC, allowed=1), raising=False)
    latched = eqcg.runtime.atomic._LatchedFile(tmp_path / "f", "w+b")
    assert latched.write(b"abcd") == 4 and latched.error is None
    assert latched.write(b"efgh") == 4 and latched.error.errno == errno.ENOSPC
    assert latched.seek(0, os.SEEK_END) == 8 == latched.tell()
    latched.seek(2)
    buffer = bytearray(8)
    assert latched.readinto(buffer) == 6 and bytes(buffer[:6]) == b"cd\0\0\0\0"
    latched.close()
    assert (tmp_path / "f").read_bytes() == b"abcd"
    with pytest.raises(OSError, match="No space left on device"):
        latched.check()


def test_a_finished_output_being_written_again_names_the_writer_first(tmp_path):
    """A second writer learns that the output is being written, not that it should pass
    --resume or --overwrite (which the lock would refuse next)."""
    out = tmp_path / "rollout"
    _previous_rollout(out)
    with claim_output(out, "rollout", resume=True):
        with pytest.raises(OutputError, match=rf"--out {out}: is being written by process "
                                              rf"{os.getpid()} on "):
            check_output(out, "rollout")


def test_eqcg_warnings_print_as_one_line_of_the_command():
    import eqcg.runtime.outputs as ours

    with cli._warnings_as_lines("eqcg rollout"):
        mine = warnings.formatwarning("no validation systems", UserWarning, ours.__file__, 3)
        theirs = warnings.formatwarning("deprecated", DeprecationWarning, "/x/torch/jit.py", 7)
    assert mine == "eqcg rollout: warning: no validation systems\n"
    assert theirs.startswith("/x/torch/jit.py:7: DeprecationWarning: deprecated")
    assert warnings.formatwarning("x", UserWarning, ours.__file__, 3) != mine  # restored
