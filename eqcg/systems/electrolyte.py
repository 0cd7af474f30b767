"""Reference MD of PEO + LiTFSI polymer electrolytes, run by the real LAMMPS engine.

Each system is a periodic box of methyl-capped PEO chains ``CH3-(O-CH2-CH2)n-O-CH3`` with
``n_salt`` Li+ and TFSI- ions, all-atom (force field and sources in
:mod:`eqcg.systems.peo_litfsi_forcefield`: OPLS-AA ethers, CL&P TFSI, Åqvist Li+, ion charges
scaled by 0.8). The workflow per system:

1. **Build** (Python): ideal molecule geometries, placed at random positions and orientations
   in a dilute cubic box (``pack_density``) with no two atoms of different molecules (or
   periodic images) closer than :data:`MIN_DISTANCE`; written as a LAMMPS data file.
2. **Minimise** (LAMMPS ``minimize``), then SHAKE the C-H bonds.
3. **Compress** to ``target_density`` in ``compress_chunks`` separate ``fix deform`` runs at
   1 fs under a Langevin thermostat (one long compression under PPPM loses atoms; faster than
   ~20 ps it overheats).
4. **NPT** at 1 atm (``fix npt``, 2 fs); the mean density and volume over its second half are
   printed to the log (``eqcg npt_density_g_cm3``) and the box is rescaled to the mean volume.
5. ``write_data equilibrated.data`` (the topology of the dataset), then **NVT production**
   (``fix nvt``, 2 fs) dumping unwrapped ``xu yu zu`` sorted by atom id every
   ``frame_interval_ps``, in runs of ``restart_every_ps`` each followed by a restart file.

**Interruptions.** A generation killed during a production continues from the last restart
file (``in.continue``: the dump cut back to that point and appended to), so it loses at most
``restart_every_ps`` of production; killed before the first one (during equilibration) the
system starts over. The continuation is bit-exact: its dump and final restart file are
byte-identical to an uninterrupted run's (tested on ``tiny``), because the uninterrupted run
also starts a new ``run`` at every restart point and ``fix nvt`` (Nose-Hoover) keeps its
thermostat state in the restart file. ``fix langevin`` (compression) keeps no random-number
state there, so the stages before the production are not continued, only rerun.

Interactions: ``lj/cut/coul/long`` (cut-off ``cutoff`` Å) with PPPM (``kspace_accuracy``),
geometric mixing, 1-4 scaling 0.5, long-range LJ tail correction.

Presets: :mod:`eqcg.systems.electrolyte_presets`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from eqcg.data.lammps_files import read_lammps
from eqcg.data.trajectory import SystemTrajectory
from eqcg.errors import SimulationError
from eqcg.systems import peo_litfsi_forcefield as ff
from eqcg.systems.electrolyte_presets import PRESETS, ElectrolytePreset
from eqcg.systems.generate import LammpsJob, SystemSpec, generation_record, run_specs
from eqcg.systems.lammps_runner import LOG_FILE

AVOGADRO = 6.02214076e23
MIN_DISTANCE = 2.5  # Å, closest approach of atoms of different molecules when packing
INPUT_FILE = "in.electrolyte"
INITIAL_DATA = "initial.data"
FORCEFIELD_FILE = "forcefield.lmp"
EQUILIBRATED_DATA = "equilibrated.data"
DUMP_FILE = "production.dump"
CONTINUE_FILE = "in.continue"
RESTART_PREFIX = "production.restart."  # + the production step it was written at
RESTART_TEMP = "production.restart.tmp"
DENSITY_TAG = "eqcg npt_density_g_cm3"
_MAX_PLACEMENT_TRIES = 2000
_AVERAGE_EVERY = 10  # MD steps between the NPT density samples


@dataclass(frozen=True)
class ElectrolyteRecipe:
    """One system: its composition, temperature and seeds.

    Attributes:
        name: system name (unique within a generation).
        n_chains: number of PEO chains.
        chain_length: EO repeat units per chain, ``n`` in ``CH3-(OCH2CH2)n-OCH3``.
        n_salt: number of Li+ / TFSI- pairs.
        temperature: K.
        seed: seed of the packing and of LAMMPS' random numbers.
        preset: the simulation protocol.
    """

    name: str
    n_chains: int
    chain_length: int
    n_salt: int
    temperature: float
    seed: int
    preset: ElectrolytePreset

    @property
    def li_eo_ratio(self) -> float:
        """Actual [Li]/[EO] ratio, counting EO repeat units (as is usual for PEO)."""
        return self.n_salt / (self.n_chains * self.chain_length)

    @property
    def n_atoms(self) -> int:
        return self.n_chains * (7 * self.chain_length + 9) + 16 * self.n_salt

    def attrs(self) -> dict[str, object]:
        """Scalar metadata stored with the trajectory (units in the key names)."""
        p = self.preset
        return {
            "generator": "eqcg.systems.electrolyte",
            "preset": p.name,
            "forcefield": "OPLS-AA (PEO) + CL&P (TFSI) + Aqvist (Li+)",
            "n_chains": self.n_chains,
            "chain_length": self.chain_length,
            "n_salt": self.n_salt,
            "li_eo_ratio": self.li_eo_ratio,
            "temperature_K": self.temperature,
            "pressure_atm": p.pressure_atm,
            "charge_scale": p.charge_scale,
            "dt_ps": p.dt_ps,
            "frame_interval_ps": p.frame_interval_ps,
            "npt_ps": p.npt_ps,
            "production_ps": p.production_ps,
            "cutoff_A": p.cutoff,
            "seed": self.seed,
        }


def get_preset(preset: str | ElectrolytePreset) -> ElectrolytePreset:
    """The preset named ``preset`` (or ``preset`` itself); ValueError naming the known ones."""
    if isinstance(preset, ElectrolytePreset):
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown electrolyte preset {preset!r}; known: {', '.join(PRESETS)}"
        ) from None


def electrolyte_recipes(
    preset: str | ElectrolytePreset, seed: int = 0, n_systems: int | None = None
) -> list[ElectrolyteRecipe]:
    """The systems of a preset: its composition/temperature grid in a seeded random order.

    System ``i`` takes grid point ``i`` modulo the grid size, so asking for more systems than
    grid points repeats compositions with new packings and velocities.
    """
    p = get_preset(preset)
    n_systems = p.n_systems if n_systems is None else n_systems
    if n_systems < 1:
        raise ValueError(f"n_systems must be >= 1, got {n_systems}")
    grid = list(itertools.product(p.chains, p.li_eo_ratios, p.temperatures))
    order = np.random.default_rng(seed).permutation(len(grid))
    recipes = []
    for i in range(n_systems):
        (n_chains, n), ratio, temperature = grid[order[i % len(grid)]]
        n_salt = max(1, round(ratio * n_chains * n))
        recipes.append(ElectrolyteRecipe(
            name=f"peo{n}x{n_chains}_li{n_salt}_{temperature:.0f}K_{i:03d}",
            n_chains=n_chains, chain_length=n, n_salt=n_salt, temperature=temperature,
            seed=int(np.random.default_rng([seed, i]).integers(1, 2**31 - 1)), preset=p,
        ))
    return recipes


# ----------------------------------------------------------------------------- building


@dataclass
class PackedBox:
    """A built system: per-atom arrays, topology and the cubic box edge (Å)."""

    types: np.ndarray       # (n_atoms,) 0-based index into ff.TYPE_NAMES
    charges: np.ndarray     # (n_atoms,) e
    molecule: np.ndarray    # (n_atoms,) 1-based molecule id
    positions: np.ndarray   # (n_atoms, 3) Å, unwrapped
    bonds: np.ndarray       # (n_bonds, 2) 0-based
    angles: np.ndarray      # (n_angles, 3)
    dihedrals: np.ndarray   # (n_dihedrals, 4)
    box_length: float


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3x3 rotation matrix (from a random unit quaternion)."""
    w, x, y, z = (q := rng.normal(size=4)) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def _clashes(candidate: np.ndarray, placed: np.ndarray, box_length: float) -> bool:
    """Whether ``candidate`` comes within :data:`MIN_DISTANCE` of ``placed`` or of its own
    periodic images (minimum image in a cubic box of edge ``box_length`` Å)."""
    if len(placed):
        d = candidate[:, None, :] - placed[None, :, :]
        d -= box_length * np.round(d / box_length)
        if np.einsum("ijk,ijk->ij", d, d).min() < MIN_DISTANCE**2:
            return True
    d = candidate[:, None, :] - candidate[None, :, :]
    shift = np.round(d / box_length)
    imaged = shift.any(axis=-1)
    if not imaged.any():
        return False
    d -= box_length * shift
    return bool(np.einsum("ij,ij->i", d[imaged], d[imaged]).min() < MIN_DISTANCE**2)


def pack_molecules(
    molecules: list[ff.Molecule], box_length: float, rng: np.random.Generator
) -> list[np.ndarray]:
    """Random positions and orientations for ``molecules`` in a periodic cube (Å), no clashes.

    Molecules are placed in the given order (put the big ones first); each gets up to
    :data:`_MAX_PLACEMENT_TRIES` random tries. Raises :class:`SimulationError` when the box is
    too crowded.
    """
    placed = np.zeros((0, 3))
    coords = []
    for index, molecule in enumerate(molecules):
        centred = molecule.coords - molecule.coords.mean(axis=0)
        for _ in range(_MAX_PLACEMENT_TRIES):
            candidate = centred @ _random_rotation(rng).T + rng.uniform(0, box_length, 3)
            if not _clashes(candidate, placed, box_length):
                break
        else:
            raise SimulationError(
                f"could not place molecule {index} ({molecule.name}) without overlaps in a "
                f"{box_length:.1f} Å box after {_MAX_PLACEMENT_TRIES} tries; lower pack_density"
            )
        coords.append(candidate)
        placed = np.concatenate([placed, candidate])
    return coords


def recipe_molecules(recipe: ElectrolyteRecipe) -> list[ff.Molecule]:
    """The molecules of a recipe, largest first: chains, then TFSI-, then Li+."""
    scale = recipe.preset.charge_scale
    return (
        [ff.peo_chain(recipe.chain_length)] * recipe.n_chains
        + [ff.tfsi(scale)] * recipe.n_salt
        + [ff.lithium(scale)] * recipe.n_salt
    )


def box_length_for(mass: float, density: float) -> float:
    """Edge (Å) of the cube holding ``mass`` g/mol at ``density`` g/cm^3."""
    return float((mass / (AVOGADRO * density) * 1e24) ** (1 / 3))


def build_box(recipe: ElectrolyteRecipe) -> PackedBox:
    """Pack a recipe's molecules at the preset's ``pack_density`` (Å, e)."""
    molecules = recipe_molecules(recipe)
    mass = sum(m.mass for m in molecules)
    box_length = box_length_for(mass, recipe.preset.pack_density)
    rng = np.random.default_rng(recipe.seed)
    coords = pack_molecules(molecules, box_length, rng)
    types, charges, mol_ids, bonds, angles, dihedrals = [], [], [], [], [], []
    offset = 0
    for mol_id, molecule in enumerate(molecules, start=1):
        types.append([ff.TYPE_INDEX[t] for t in molecule.types])
        charges.append(molecule.charges)
        mol_ids.append(np.full(molecule.n_atoms, mol_id))
        bonds.append(molecule.bonds + offset)
        angles.append(ff.angles_of(molecule.n_atoms, molecule.bonds) + offset)
        dihedrals.append(ff.dihedrals_of(molecule.n_atoms, molecule.bonds) + offset)
        offset += molecule.n_atoms
    return PackedBox(
        types=np.concatenate(types), charges=np.concatenate(charges),
        molecule=np.concatenate(mol_ids), positions=np.concatenate(coords),
        bonds=np.concatenate(bonds).reshape(-1, 2),
        angles=np.concatenate(angles).reshape(-1, 3),
        dihedrals=np.concatenate(dihedrals).reshape(-1, 4), box_length=box_length,
    )


def _topology_types(
    box: PackedBox, items: np.ndarray, lookup: Callable[[tuple[str, ...]], int]
) -> np.ndarray:
    """1-based LAMMPS type of each bond/angle/dihedral from its atoms' type names."""
    names = np.asarray(ff.TYPE_NAMES)[box.types]
    return np.array([lookup(tuple(names[row])) + 1 for row in items], dtype=np.int64)


def write_data_file(path: str | os.PathLike, box: PackedBox, title: str) -> None:
    """Write ``box`` as a LAMMPS data file (atom style full, wrapped positions + images)."""
    n = len(box.types)
    length = box.box_length
    image = np.floor(box.positions / length).astype(np.int64)
    wrapped = box.positions - image * length
    sections = [
        f"{title}\n",
        f"{n} atoms\n{len(ff.ATOM_TYPES)} atom types\n"
        f"{len(box.bonds)} bonds\n{len(ff.BOND_KEYS)} bond types\n"
        f"{len(box.angles)} angles\n{len(ff.ANGLE_KEYS)} angle types\n"
        f"{len(box.dihedrals)} dihedrals\n{len(ff.DIHEDRAL_KEYS)} dihedral types\n",
        "\n".join(f"0.0 {length:.6f} {lo} {hi}" for lo, hi in
                  (("xlo", "xhi"), ("ylo", "yhi"), ("zlo", "zhi"))) + "\n",
        "Masses\n\n" + "\n".join(
            f"{i} {t.mass:.4f}  # {t.name}" for i, t in enumerate(ff.ATOM_TYPES, start=1)
        ) + "\n",
        "Atoms  # full\n\n" + "\n".join(
            f"{i + 1} {box.molecule[i]} {box.types[i] + 1} {box.charges[i]:.6f} "
            f"{wrapped[i, 0]:.6f} {wrapped[i, 1]:.6f} {wrapped[i, 2]:.6f} "
            f"{image[i, 0]} {image[i, 1]} {image[i, 2]}" for i in range(n)
        ) + "\n",
    ]
    for header, items, lookup in (
        ("Bonds", box.bonds, ff.bond_type),
        ("Angles", box.angles, ff.angle_type),
        ("Dihedrals", box.dihedrals, ff.dihedral_type),
    ):
        kinds = _topology_types(box, items, lookup)
        rows = np.column_stack([np.arange(1, len(items) + 1), kinds, items + 1])
        sections.append(f"{header}\n\n" + "\n".join(" ".join(map(str, r)) for r in rows) + "\n")
    Path(path).write_text("\n".join(sections))


# ----------------------------------------------------------------------------- LAMMPS


def _steps(time_ps: float, dt_ps: float) -> int:
    return max(1, round(time_ps / dt_ps))


@dataclass(frozen=True)
class StageSteps:
    """MD steps of a recipe's LAMMPS stages.

    Attributes:
        compress_chunk: steps of each of the ``compress_chunks`` compression runs.
        npt: steps of the NPT equilibration.
        frame_every: steps between recorded frames.
        production: steps of the NVT production (whole frames).
        restart_every: production steps between restart files (whole frames).
        equilibration: steps before the production (compression and NPT).
    """

    compress_chunk: int
    npt: int
    frame_every: int
    production: int
    restart_every: int
    equilibration: int

    @property
    def total(self) -> int:
        return self.equilibration + self.production

    def restart_points(self) -> list[int]:
        """Production steps with a restart file: 0, every ``restart_every``, and the end."""
        points = list(range(0, self.production, self.restart_every))
        return points + [self.production]


def stage_steps(preset: ElectrolytePreset) -> StageSteps:
    """The MD steps of ``preset``'s stages."""
    p = preset
    chunk = _steps(p.compress_ps / p.compress_chunks, p.compress_dt_ps)
    npt = _AVERAGE_EVERY * _steps(p.npt_ps, _AVERAGE_EVERY * p.dt_ps)
    frame_every = _steps(p.frame_interval_ps, p.dt_ps)
    return StageSteps(
        compress_chunk=chunk,
        npt=npt,
        frame_every=frame_every,
        production=frame_every * _steps(p.production_ps, p.frame_interval_ps),
        restart_every=frame_every * _steps(p.restart_every_ps, p.frame_interval_ps),
        equilibration=p.compress_chunks * chunk + npt,
    )


def restart_file(step: int) -> str:
    """Name of the production restart file written at production step ``step``."""
    return f"{RESTART_PREFIX}{step}"


def _production_settings(recipe: ElectrolyteRecipe, after: int | None = None) -> str:
    """The NVT production's fixes and dump; a run continued from production step ``after``
    appends to the dump only the frames after that step (the dump holds the frame at it as the
    first run wrote it: a continuation's first frame, written after ``read_restart`` wrapped the
    positions into the box, can differ from it in the last digit)."""
    p = recipe.preset
    dt_fs = 1000 * p.dt_ps
    temp = recipe.temperature
    steps = stage_steps(p)
    return f"""fix integrate all nvt temp {temp} {temp} {100 * dt_fs}
dump trajectory all custom {steps.frame_every} {DUMP_FILE} id type xu yu zu
dump_modify trajectory sort id{"" if after is None else f" append yes delay {after + 1}"}
"""


def _production_chunks(recipe: ElectrolyteRecipe, start: int) -> str:
    """The production after step ``start`` (a restart point): one ``run`` up to each next
    restart point, then its restart file, written whole and renamed (a kill mid-write leaves
    the previous one), the previous one removed."""
    points = [s for s in stage_steps(recipe.preset).restart_points() if s >= start]
    lines = []
    for previous, point in itertools.pairwise(points):
        lines += [f"run {point} upto", f"write_restart {RESTART_TEMP}",
                  f"shell mv {RESTART_TEMP} {restart_file(point)}",
                  f"shell rm -f {restart_file(previous)}"]
    return "".join(f"{line}\n" for line in lines)


def _save_first_restart() -> str:
    return (f"write_restart {RESTART_TEMP}\nshell mv {RESTART_TEMP} {restart_file(0)}\n")


def lammps_input(recipe: ElectrolyteRecipe) -> tuple[str, int]:
    """The LAMMPS input script of a recipe and the number of MD steps it runs."""
    p = recipe.preset
    temp = recipe.temperature
    rng = np.random.default_rng([recipe.seed, 1])  # a stream apart from the packing's
    seed_velocity, seed_langevin = (int(s) for s in rng.integers(1, 900_000_000, size=2))
    steps = stage_steps(p)
    thermo_every = max(1, _steps(1.0, p.dt_ps))
    scale = (p.pack_density / p.target_density) ** (1 / (3 * p.compress_chunks))
    shake_type = ff.bond_type(ff.SHAKE_BOND) + 1
    dt_fs, compress_dt_fs = 1000 * p.dt_ps, 1000 * p.compress_dt_ps
    half = max(1, steps.npt // (2 * _AVERAGE_EVERY))  # samples in the second half of NPT
    compress = "\n".join(
        f"fix squeeze all deform 1 x scale {scale:.8f} y scale {scale:.8f} "
        f"z scale {scale:.8f} remap x\nrun {steps.compress_chunk}\nunfix squeeze"
        for _ in range(p.compress_chunks)
    )
    script = f"""# PEO/LiTFSI electrolyte {recipe.name} (written by eqcg.systems.electrolyte)
units real
atom_style full
boundary p p p
pair_style lj/cut/coul/long {p.cutoff}
pair_modify mix geometric tail yes
kspace_style pppm {p.kspace_accuracy}
bond_style harmonic
angle_style harmonic
dihedral_style opls
special_bonds lj/coul 0.0 0.0 0.5
read_data {INITIAL_DATA}
include {FORCEFIELD_FILE}
neighbor 2.0 bin
neigh_modify delay 0 every 1 check yes
thermo_style custom step temp press density pe
thermo {thermo_every}

# 1. relax the packed box
minimize 1.0e-4 1.0e-6 1000 10000
reset_timestep 0

# 2. compress to {p.target_density} g/cm^3 in {p.compress_chunks} chunks, Langevin at {temp} K
fix shake all shake 1.0e-4 20 0 b {shake_type}
velocity all create {temp} {seed_velocity} mom yes rot yes dist gaussian
timestep {compress_dt_fs}
fix integrate all nve
fix thermostat all langevin {temp} {temp} 100.0 {seed_langevin} zero yes
{compress}
unfix thermostat
unfix integrate

# 3. NPT at {p.pressure_atm} atm; mean density and volume over the second half
timestep {dt_fs}
reset_timestep 0
fix integrate all npt temp {temp} {temp} {100 * dt_fs} iso {p.pressure_atm} {p.pressure_atm} \
{1000 * dt_fs}
variable density equal density
variable volume equal vol
fix npt_mean all ave/time {_AVERAGE_EVERY} {half} {steps.npt} v_density v_volume
run {steps.npt}
print "{DENSITY_TAG} $(f_npt_mean[1]:%.5f)"
variable edge_scale equal (f_npt_mean[2]/vol)^(1.0/3.0)
change_box all x scale ${{edge_scale}} y scale ${{edge_scale}} z scale ${{edge_scale}} remap
unfix npt_mean
unfix integrate
write_data {EQUILIBRATED_DATA} nocoeff

# 4. NVT production, unwrapped positions every {p.frame_interval_ps} ps and a restart file
#    every {steps.restart_every * p.dt_ps:g} ps (in.continue goes on from the last one)
reset_timestep 0
{_production_settings(recipe)}{_save_first_restart()}{_production_chunks(recipe, 0)}"""
    return script, steps.total


def continuation_input(recipe: ElectrolyteRecipe, step: int) -> str:
    """The LAMMPS script continuing a recipe's production from its restart file at production
    step ``step``: what a restart file does not hold is set again as in the first script, the
    fixes under the same IDs (``fix nvt`` takes its thermostat state back from the file), the
    log and the dump are appended to."""
    p = recipe.preset
    shake_type = ff.bond_type(ff.SHAKE_BOND) + 1
    return f"""# continues {INPUT_FILE} of {recipe.name} from production step {step} \
(written by eqcg.systems.electrolyte)
log {LOG_FILE} append
read_restart {restart_file(step)}
kspace_style pppm {p.kspace_accuracy}
neighbor 2.0 bin
neigh_modify delay 0 every 1 check yes
thermo_style custom step temp press density pe
thermo {max(1, _steps(1.0, p.dt_ps))}
timestep {1000 * p.dt_ps}
fix shake all shake 1.0e-4 20 0 b {shake_type}
{_production_settings(recipe, after=step)}{_production_chunks(recipe, step)}"""


def write_inputs(recipe: ElectrolyteRecipe, workdir: Path) -> LammpsJob:
    """Build the box and write the data file, force field and input script into ``workdir``
    (removing the restart files of an earlier start)."""
    for old in _restart_steps(workdir):
        (workdir / restart_file(old)).unlink()
    box = build_box(recipe)
    write_data_file(workdir / INITIAL_DATA, box, f"PEO/LiTFSI {recipe.name} (eqcg)")
    (workdir / FORCEFIELD_FILE).write_text(ff.lammps_coefficients())
    script, total_steps = lammps_input(recipe)
    (workdir / INPUT_FILE).write_text(script)
    return LammpsJob(input_file=INPUT_FILE, total_steps=total_steps)


def _restart_steps(workdir: Path) -> list[int]:
    """Production steps of the restart files in ``workdir``, ascending."""
    names = (path.name[len(RESTART_PREFIX):] for path in workdir.glob(f"{RESTART_PREFIX}*"))
    return sorted(int(name) for name in names if name.isdigit())


def truncate_dump(path: Path, step: int) -> list[int]:
    """Cut the text dump at ``path`` before its first frame after timestep ``step`` (and
    before a truncated timestep line); returns the timesteps of the frames kept."""
    kept: list[int] = []
    with open(path, "r+b") as f:
        while line := f.readline():
            if line.startswith(b"ITEM: TIMESTEP"):
                start = f.tell() - len(line)
                value = f.readline().strip()
                if not value.isdigit() or int(value) > step:
                    f.truncate(start)
                    break
                kept.append(int(value))
    return kept


def continue_inputs(recipe: ElectrolyteRecipe, workdir: Path) -> LammpsJob | None:
    """Prepare the continuation of an interrupted run in ``workdir`` from its last restart file:
    the dump cut back to the frames up to it, ``in.continue`` written. ``None`` when there is
    no restart file, or the dump lacks a frame up to it (the run then starts over)."""
    points = _restart_steps(workdir)
    if not points or not (workdir / DUMP_FILE).is_file():
        return None
    *stale, step = points
    for old in stale:  # left by a kill between writing a restart file and removing the last
        (workdir / restart_file(old)).unlink()
    steps = stage_steps(recipe.preset)
    if truncate_dump(workdir / DUMP_FILE, step) != list(range(0, step + 1, steps.frame_every)):
        return None
    (workdir / CONTINUE_FILE).write_text(continuation_input(recipe, step))
    return LammpsJob(input_file=CONTINUE_FILE, total_steps=steps.total,
                     done_steps=steps.equilibration + step, log_file=None)


def npt_density(workdir: str | os.PathLike) -> float:
    """Mean density over the second half of NPT (g/cm^3), read from the LAMMPS log."""
    log = Path(workdir) / LOG_FILE
    for line in log.read_text().splitlines():
        if line.startswith(DENSITY_TAG):
            return float(line.split()[-1])
    raise SimulationError(f"{log}: no '{DENSITY_TAG}' line; did the NPT stage run?")


def read_output(recipe: ElectrolyteRecipe, workdir: Path) -> SystemTrajectory:
    """The production trajectory of a finished run, with named atom types and metadata."""
    traj = read_lammps(
        workdir / EQUILIBRATED_DATA, [workdir / DUMP_FILE], units="real", name=recipe.name,
        timestep=recipe.preset.dt_ps,
    )
    type_names = [ff.TYPE_NAMES[int(t) - 1] for t in traj.topology.type_names]
    attrs = {
        **recipe.attrs(),
        "density_npt_g_cm3": npt_density(workdir),
    }
    return replace(
        traj,
        topology=replace(traj.topology, type_names=type_names),
        source=f"LAMMPS {workdir / INPUT_FILE}",
        attrs=attrs,
    )


def recipe_spec(recipe: ElectrolyteRecipe) -> SystemSpec:
    """The :class:`SystemSpec` running one recipe."""
    return SystemSpec(
        name=recipe.name,
        write_inputs=lambda workdir: write_inputs(recipe, workdir),
        read_output=lambda workdir: read_output(recipe, workdir),
        continue_inputs=lambda workdir: continue_inputs(recipe, workdir),
    )


def history_spec(
    preset: ElectrolytePreset, seed: int, n_frames: int, frame_interval: float
) -> SystemSpec:
    """One box of ``preset`` (its first recipe for ``seed``) recording ``n_frames`` production
    frames ``frame_interval`` ps apart, a whole number of MD steps: the short run whose frames
    are the history of ``eqcg simulate --generate-history electrolyte``."""
    preset = replace(preset, frame_interval_ps=frame_interval,
                     production_ps=(n_frames - 1) * frame_interval)
    return recipe_spec(electrolyte_recipes(preset, seed, 1)[0])


def electrolyte_specs(
    preset: str | ElectrolytePreset, seed: int = 0, n_systems: int | None = None
) -> list[SystemSpec]:
    """One :class:`SystemSpec` per system of ``preset`` (see :func:`electrolyte_recipes`)."""
    return [recipe_spec(r) for r in electrolyte_recipes(preset, seed, n_systems)]


def generate_electrolyte(
    out: str | os.PathLike,
    preset: str | ElectrolytePreset = "tiny",
    seed: int = 0,
    n_systems: int | None = None,
    jobs: int | None = None,
    show_progress: bool = True,
) -> Path:
    """Simulate a preset's PEO/LiTFSI systems with LAMMPS and write the dataset into ``out``.

    LAMMPS files stay under ``out/lammps/<system>/``; finished systems are not rerun. Each
    LAMMPS job uses one thread; ``jobs`` run at once (default: one per core). Returns the
    dataset file (units ``real``: Å, ps).
    """
    p = get_preset(preset)
    specs = electrolyte_specs(p, seed, n_systems)
    source = f"eqcg.systems.electrolyte preset={p.name} seed={seed}: {asdict(p)}"
    return run_specs(specs, out, jobs=jobs, threads_per_job=1, source=source,
                     record=generation_record(p.name, p, seed, len(specs)),
                     show_progress=show_progress)
