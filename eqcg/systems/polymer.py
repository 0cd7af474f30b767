"""Reference MD of single bead-spring polymer chains in implicit solvent (LAMMPS, ``units lj``).

Each system is one linear chain whose beads are either solvophobic (``A``, LAMMPS type 1) or
solvophilic (``B``, type 2), in a random sequence. Interactions (all masses and sigmas 1):

* bonds: FENE, ``K = 30``, ``R0 = 1.5``, with its WCA core (``special_bonds fene``);
* ``A``-``A``: Lennard-Jones with well depth ``eps_phobic`` cut at 2.5 sigma (attractive);
* ``A``-``B`` and ``B``-``B``: purely repulsive WCA (``eps = 1`` cut at ``2^(1/6)`` sigma).

Solvent is implicit: ``fix langevin`` at temperature ``T`` with damping ``damp`` plus
``fix nve``. The chain is not periodic (``boundary s s s``): it diffuses freely and its
positions are stored as they are, with ``pbc=False`` and a zero box. Chains rich in ``A``
collapse into a globule, chains rich in ``B`` are swollen coils; the fraction of ``A`` beads is
drawn per system (stratified over ``phobic_fraction``) so a dataset spans both.

Each run: a start from a self-avoiding random walk written by :func:`random_walk`, a short
relaxation with ``fix nve/limit``, an unrecorded equilibration, then production frames every
``steps_per_frame`` steps (``dt = 0.01 tau``; 500 steps = 5 tau by default).

Presets: :mod:`eqcg.systems.polymer_presets`.

A chain's attrs record its length (``n_beads``), sequence and solvophobic fraction, and
``length_group``: ``trained`` for lengths in ``n_beads``, ``longer`` for the extra chains.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from eqcg.data.lammps_files import read_lammps
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import ConfigError
from eqcg.systems.generate import LammpsJob, SystemSpec, generation_record, run_specs
from eqcg.systems.polymer_presets import PRESETS, PolymerPreset

PHOBIC = "A"
PHILIC = "B"
INPUT_FILE = "in.chain"
DATA_FILE = "chain.data"
DUMP_FILE = "traj.dump"
TRAINED_LENGTHS = "trained"  # length_group of chains with lengths in the preset's n_beads
LONGER_LENGTHS = "longer"  # length_group of the preset's extra, longer chains

_BOND_LENGTH = 0.97  # sigma, near the FENE+WCA minimum
_MIN_DISTANCE = 0.8  # sigma, closest approach of non-bonded beads in the initial walk
_WCA_CUTOFF = 2.0 ** (1.0 / 6.0)
_MAX_LAMMPS_SEED = 900_000_000  # LAMMPS' Marsaglia generator takes seeds 1..9e8


def get_preset(preset: str | PolymerPreset) -> PolymerPreset:
    """The preset named ``preset`` (or ``preset`` itself); :class:`ConfigError` listing the
    known ones."""
    if isinstance(preset, PolymerPreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ConfigError(
            f"unknown polymer preset {preset!r}; known presets: {', '.join(PRESETS)}"
        ) from None


def random_walk(n_beads: int, rng: np.random.Generator, max_tries: int = 100) -> np.ndarray:
    """``(n_beads, 3)`` positions (sigma) of a self-avoiding random walk, centred at the origin.

    Steps have length ``0.97`` sigma; a step closer than ``0.8`` sigma to an earlier bead is
    redrawn (up to ``max_tries`` times, after which the walk restarts).
    """
    while (pos := _try_walk(n_beads, rng, max_tries)) is None:
        pass
    return pos - pos.mean(axis=0)


def _try_walk(n_beads: int, rng: np.random.Generator, max_tries: int) -> np.ndarray | None:
    """One attempt at :func:`random_walk`: ``(n_beads, 3)`` positions, or ``None`` if stuck."""
    pos = np.zeros((n_beads, 3))
    for i in range(1, n_beads):
        for _ in range(max_tries):
            step = rng.normal(size=3)
            trial = pos[i - 1] + _BOND_LENGTH * step / np.linalg.norm(step)
            if i < 2 or np.linalg.norm(pos[: i - 1] - trial, axis=1).min() >= _MIN_DISTANCE:
                pos[i] = trial
                break
        else:
            return None
    return pos


def random_sequence(n_beads: int, phobic_fraction: float, rng: np.random.Generator) -> str:
    """A random sequence of ``round(phobic_fraction * n_beads)`` ``A`` beads and the rest ``B``."""
    n_phobic = int(round(phobic_fraction * n_beads))
    beads = np.array([PHOBIC] * n_phobic + [PHILIC] * (n_beads - n_phobic))
    return "".join(rng.permutation(beads))


def write_data_file(path: Path, sequence: str, positions: np.ndarray) -> None:
    """Write a LAMMPS data file (``atom_style bond``) of one linear chain.

    ``positions`` is ``(n_beads, 3)`` in sigma; bead ``i`` has type 1 (``A``) or 2 (``B``) and
    is bonded to bead ``i + 1``.
    """
    n = len(sequence)
    lo = positions.min(axis=0) - 1.0
    hi = positions.max(axis=0) + 1.0
    lines = [
        f"LAMMPS data file: eqcg polymer chain {sequence}",
        "",
        f"{n} atoms",
        f"{n - 1} bonds",
        "2 atom types",
        "1 bond types",
        "",
        *(f"{a:.6f} {b:.6f} {axis}lo {axis}hi" for a, b, axis in zip(lo, hi, "xyz", strict=True)),
        "",
        "Masses",
        "",
        "1 1.0",
        "2 1.0",
        "",
        "Atoms # bond",
        "",
    ]
    for i, (bead, (x, y, z)) in enumerate(zip(sequence, positions, strict=True), start=1):
        lines.append(f"{i} 1 {1 if bead == PHOBIC else 2} {x:.8f} {y:.8f} {z:.8f}")
    lines += ["", "Bonds", ""]
    lines += [f"{i} 1 {i} {i + 1}" for i in range(1, n)]
    path.write_text("\n".join(lines) + "\n")


def input_script(preset: PolymerPreset, lammps_seed: int) -> str:
    """The LAMMPS input script running one chain from :data:`DATA_FILE` (see module doc)."""
    p = preset
    thermo_every = max(1, p.total_steps // 100)
    return f"""# eqcg polymer chain: FENE + LJ, implicit solvent (Langevin)
units lj
atom_style bond
boundary s s s
read_data {DATA_FILE}

bond_style fene
bond_coeff 1 30.0 1.5 1.0 1.0
special_bonds fene
pair_style lj/cut {p.cutoff_phobic}
pair_coeff 1 1 {p.eps_phobic} 1.0 {p.cutoff_phobic}
pair_coeff 1 2 1.0 1.0 {_WCA_CUTOFF:.8f}
pair_coeff 2 2 1.0 1.0 {_WCA_CUTOFF:.8f}
pair_modify shift yes
neighbor 0.4 bin
neigh_modify every 1 delay 0 check yes

timestep {p.dt}
velocity all create {p.temperature} {lammps_seed} dist gaussian mom yes rot yes
fix thermostat all langevin {p.temperature} {p.temperature} {p.damp} {lammps_seed + 1}
thermo_style custom step temp pe ebond
thermo {thermo_every}

fix relax all nve/limit 0.05
run {p.relax_steps}
unfix relax

fix integrate all nve
run {p.equil_steps}

reset_timestep 0
dump traj all custom {p.steps_per_frame} {DUMP_FILE} id type xu yu zu
dump_modify traj sort id format float %.8g
run {p.production_steps}
"""


def chain_spec(
    name: str, sequence: str, preset: PolymerPreset, rng: np.random.Generator,
    length_group: str = TRAINED_LENGTHS,
) -> SystemSpec:
    """The spec of one chain with the given ``A``/``B`` sequence, run with ``preset``'s physics.

    ``rng`` draws the initial walk and the LAMMPS seed (``velocity``; ``fix langevin`` gets the
    seed + 1), so the run is fixed by its state. The seed is recorded as ``lammps_seed`` in the
    system's attrs, beside the sequence, its solvophobic fraction, ``length_group``
    (:data:`TRAINED_LENGTHS` or :data:`LONGER_LENGTHS`) and the physics parameters.
    """
    if not sequence or set(sequence) - {PHOBIC, PHILIC}:
        raise ConfigError(
            f"{name}: sequence must be a non-empty string of A and B, got {sequence!r}"
        )
    positions = random_walk(len(sequence), rng)
    lammps_seed = int(rng.integers(1, _MAX_LAMMPS_SEED))
    attrs = {
        "sequence": sequence,
        "phobic_fraction": sequence.count(PHOBIC) / len(sequence),
        "n_beads": len(sequence),
        "length_group": length_group,
        "eps_phobic": preset.eps_phobic,
        "cutoff_phobic": preset.cutoff_phobic,
        "eps_philic": 1.0,
        "cutoff_philic": _WCA_CUTOFF,
        "temperature": preset.temperature,
        "damp": preset.damp,
        "dt": preset.dt,
        "steps_per_frame": preset.steps_per_frame,
        "equil_steps": preset.equil_steps,
        "lammps_seed": lammps_seed,
    }

    def write_inputs(workdir: Path) -> LammpsJob:
        write_data_file(workdir / DATA_FILE, sequence, positions)
        (workdir / INPUT_FILE).write_text(input_script(preset, lammps_seed))
        return LammpsJob(input_file=INPUT_FILE, total_steps=preset.total_steps)

    def read_output(workdir: Path) -> SystemTrajectory:
        traj = read_lammps(
            workdir / DATA_FILE, [workdir / DUMP_FILE], units="lj", name=name, timestep=preset.dt
        )
        return dataclasses.replace(
            traj,
            source=f"eqcg.systems.polymer ({workdir})",
            attrs={**traj.attrs, **attrs},
        )

    return SystemSpec(name=name, write_inputs=write_inputs, read_output=read_output)


def polymer_specs(
    preset: str | PolymerPreset = "tiny", seed: int = 0, n_systems: int | None = None
) -> list[SystemSpec]:
    """Specs of the chains of ``preset`` (``n_systems`` overrides its count of chains at trained
    lengths), fixed by ``seed``, followed by the preset's longer chains.

    Lengths are uniform in the preset's ranges; solvophobic fractions are stratified over its
    range within each group (one per equal-width bin, in random order) so every group spans
    collapsed to swollen.
    """
    p = get_preset(preset)
    n = p.n_systems if n_systems is None else n_systems
    if n < 1:
        raise ConfigError(f"n_systems must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    lengths = rng.integers(p.n_beads[0], p.n_beads[1] + 1, size=n)
    fractions = _stratified(p.phobic_fraction, n, rng)
    groups = [TRAINED_LENGTHS] * n
    if p.long_systems:
        long_rng = np.random.default_rng([seed, 1])
        long_lengths = long_rng.integers(p.long_n_beads[0], p.long_n_beads[1] + 1,
                                         size=p.long_systems)
        lengths = np.concatenate([lengths, long_lengths])
        fractions = np.concatenate(
            [fractions, _stratified(p.phobic_fraction, p.long_systems, long_rng)]
        )
        groups += [LONGER_LENGTHS] * p.long_systems
    chain_rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(groups))]
    return [
        chain_spec(f"chain{i:03d}", random_sequence(int(length), f, chain_rng), p, chain_rng,
                   group)
        for i, (length, f, chain_rng, group) in enumerate(
            zip(lengths, fractions, chain_rngs, groups, strict=True)
        )
    ]


def history_spec(
    preset: PolymerPreset, seed: int, n_frames: int, frame_interval: float
) -> SystemSpec:
    """One chain of ``preset`` (length and sequence drawn from ``seed``) recording ``n_frames``
    frames ``frame_interval`` tau apart, a whole number of MD steps: the short run whose frames
    are the history of ``eqcg simulate --generate-history polymer``."""
    steps_per_frame = round(frame_interval / preset.dt)
    preset = dataclasses.replace(preset, n_frames=n_frames, steps_per_frame=steps_per_frame)
    rng = np.random.default_rng(seed)
    n_beads = int(rng.integers(preset.n_beads[0], preset.n_beads[1] + 1))
    sequence = random_sequence(n_beads, float(rng.uniform(*preset.phobic_fraction)), rng)
    return chain_spec(f"chain_seed{seed}", sequence, preset, rng)


def _stratified(bounds: tuple[float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n,)`` values in ``bounds``, one per equal-width bin, in random order."""
    lo, hi = bounds
    return lo + (hi - lo) * (rng.permutation(n) + rng.random(n)) / n


def generate_polymer(
    out: str | os.PathLike,
    preset: str | PolymerPreset = "tiny",
    seed: int = 0,
    n_systems: int | None = None,
    jobs: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Run the polymer reference MD of ``preset`` (a name or a :class:`PolymerPreset`) and write
    the dataset ``out/dataset.h5``.

    LAMMPS inputs, logs and dumps stay in ``out/lammps/<chain>/``; finished chains are not
    rerun. Returns the dataset file's path.
    """
    specs = polymer_specs(preset, seed=seed, n_systems=n_systems)
    return run_specs(
        specs,
        out,
        jobs=jobs,
        source=f"eqcg.systems.polymer preset={preset} seed={seed}",
        record=generation_record(preset if isinstance(preset, str) else "custom",
                                 get_preset(preset), seed, len(specs)),
        show_progress=show_progress,
    )
