"""The rollout file (``rollout.h5``) is written and read by the data layer, without torch."""

import json
import subprocess
import sys
import textwrap

import numpy as np

from eqcg.data.rollout_file import (
    COMPLETE,
    ROLLOUT_FILE,
    RolloutAttrs,
    RolloutHeader,
    RolloutState,
    append_frames,
    create_rollout_file,
)
from eqcg.data.trajectory import SystemTrajectory, Topology

TIME_PER_STEP = np.array([0.5, 0.25])  # tau per learned step of systems "a" and "b"
START_TIME = {"a": 5.0, "b": 2.0}


def _system(name: str, n_beads: int, first: np.ndarray) -> SystemTrajectory:
    return SystemTrajectory(
        name=name,
        topology=Topology(masses=np.ones(n_beads), types=np.zeros(n_beads, dtype=np.int64),
                          type_names=["B0"], bonds=np.stack([np.arange(n_beads - 1),
                                                             np.arange(1, n_beads)], axis=1),
                          bond_types=np.zeros(n_beads - 1, dtype=np.int64)),
        positions=first[None],
        box=10.0 * np.eye(3)[None],
        time=np.array([START_TIME[name]]),
        pbc=True,
        units="lj",
        source="eqcg rollout",
        attrs=RolloutAttrs(name, 3, 15, 0, 7, 2, 0.0, "equivariant", 1.25).to_attrs(),
    )


def _write_rollout(out, rng):
    """A streamed rollout of systems "a" (3 beads) and "b" (2 beads): frame 0, then steps 2, 4."""
    first = rng.normal(size=(5, 3))
    trajectories = [_system("a", 3, first[:3]), _system("b", 2, first[3:])]
    header = RolloutHeader({"seed": 3}, ["a", "b"], np.array([0, 3, 5]), TIME_PER_STEP)
    create_rollout_file(out / ROLLOUT_FILE, trajectories, header,
                        RolloutState(0, np.zeros((5, 2, 3)), np.arange(4, dtype=np.uint8), 0.0))
    later = rng.normal(size=(2, 5, 3))
    history = rng.normal(size=(5, 2, 3))
    append_frames(out / ROLLOUT_FILE, later, np.array([2, 4]), RolloutState(
        4, history, np.arange(8, dtype=np.uint8), 1.5, COMPLETE))
    return np.concatenate([first[None], later]), history


READ = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from eqcg.data.rollout_file import (
        ROLLOUT_FILE, RolloutAttrs, read_rollout_state, rollout_status)
    from eqcg.data.store import load_dataset

    out = Path(sys.argv[1])
    header, state = read_rollout_state(out / ROLLOUT_FILE)
    with load_dataset(out / ROLLOUT_FILE) as rollout:
        systems = {s.name: {"positions": s.positions[()].tolist(), "time": s.time.tolist(),
                            "attrs": vars(RolloutAttrs.from_attrs(s.attrs, s.name))}
                   for s in rollout}
    heavy = sorted(m for m in ("torch", "torch_geometric", "mdtraj") if m in sys.modules)
    print(json.dumps({
        "status": rollout_status(out), "step": state.step, "wall_seconds": state.wall_seconds,
        "history": state.history.tolist(), "rng_state": state.rng_state.tolist(),
        "names": header.names, "ptr": header.ptr.tolist(), "request": header.request,
        "systems": systems, "heavy": heavy,
    }))
""")


def test_a_rollout_file_reads_back_without_torch(tmp_path):
    positions, history = _write_rollout(tmp_path, np.random.default_rng(0))
    result = subprocess.run([sys.executable, "-c", READ, str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    read = json.loads(result.stdout)
    assert read["heavy"] == []
    assert (read["status"], read["step"], read["wall_seconds"]) == (COMPLETE, 4, 1.5)
    np.testing.assert_array_equal(read["history"], history)
    assert read["rng_state"] == list(range(8))
    assert (read["names"], read["ptr"], read["request"]) == (["a", "b"], [0, 3, 5], {"seed": 3})
    for i, (name, beads) in enumerate((("a", slice(0, 3)), ("b", slice(3, 5)))):
        system = read["systems"][name]
        np.testing.assert_array_equal(system["positions"], positions[:, beads])
        np.testing.assert_allclose(system["time"],
                                   START_TIME[name] + TIME_PER_STEP[i] * np.array([0, 2, 4]))
        assert system["attrs"] == vars(RolloutAttrs(name, 3, 15, 0, 7, 2, 1.5, "equivariant",
                                                    1.25))


def test_eqcg_info_on_a_rollout_loads_no_torch(tmp_path):
    """``eqcg info`` of a rollout reads the file (status and systems) without the model code."""
    _write_rollout(tmp_path, np.random.default_rng(0))
    code = textwrap.dedent("""
        import sys
        from eqcg.commands.info import describe
        print(describe(sys.argv[1]))
        assert not [m for m in ("torch", "torch_geometric") if m in sys.modules], sys.modules
    """)
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "status: complete at step 4" in result.stdout
