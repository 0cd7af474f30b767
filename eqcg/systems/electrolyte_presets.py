"""Presets of the PEO/LiTFSI electrolyte system (:mod:`eqcg.systems.electrolyte`): how to build
and simulate each family of boxes.

Light on purpose (no LAMMPS, no data readers): the system registry and the command line list
these without importing the generator.

Presets (``PRESETS``; systems differ in chain length, [Li]/[EO] ratio and temperature, drawn
from the preset's grid in a seed-dependent order; any number of systems may be asked for):

* ``tiny`` — ~20 s per system on one core (tests, CI): 3 chains of n = 12 with 2-3 LiTFSI
  (~310-330 atoms), 400 or 450 K, 10 ps compression, 10 ps NPT, 30 ps production with a frame
  every 0.5 ps (61 frames); cut-off 8 Å (the box is only ~15 Å wide).
* ``small`` — ~15-30 min per system on one core (demo): ~150 EO units as 10 x 15, 15 x 10
  or 6 x 25 chains with Li:EO 1:20 or 1:12.5 (~1,200-1,400 atoms), 353/400/450 K, 20 ps
  compression, 50 ps NPT, 200 ps production with a frame every 2 ps (101 frames); 4 systems.
* ``medium`` — the ablation scale (``configs/ablation/electrolyte_medium.yaml``): 16 systems
  from the grid of two chain sets (4 x n = 15, 6 x n = 10: 60 EO units), Li:EO 1:20 / 1:12 /
  1:8 and 425 / 475 / 525 K (hot, so that Li+ moves measurably within the run), 3-8 LiTFSI
  (~500-600 atoms, an ~18 Å box, cut-off 8 Å), 20 ps compression, 50 ps NPT, 250 ps
  production with a frame every 2 ps (126 frames; a learned step of 10 frames is 20 ps):
  5-8 min per system with two jobs at once, 49 min for all 16 on a 2-core machine (measured,
  before the production ran in restart chunks).
  At 525 K the Li+ MSD is linear from ~50 ps (D ~ 0.07 Å²/ps), so 250 ps leaves a fit window
  at every temperature.
* ``transport`` — long enough to rank Li+ mobility between boxes
  (``configs/ablation/electrolyte_transport.yaml``): 12-18 Li+ per box, 16 systems from the
  grid of two chain sets (6 x n = 24, 8 x n = 18: 144 EO units), Li:EO 1:12 / 1:8 (12 or 18
  LiTFSI) and the medium preset's 425 / 475 / 525 K (12 grid points; systems 12-15 repeat the
  first four with new packings and velocities, a measure of the MD's own spread), 1,254-1,368
  atoms (an ~26 Å box, cut-off 8 Å as in ``medium``; force field and settings unchanged),
  20 ps compression, 50 ps NPT, 1 ns production with a frame every 2 ps (501 frames) and a
  restart file every 10 ps. Measured on the 2-core machine (one LAMMPS job per core, other
  jobs sharing it: 87-94 % CPU): 10 ps of production in 19.7 s (1,254 atoms) and 20.0 s
  (1,368 atoms), 44 and 43 ns/day; with equilibration ~36 min per system, so ~4.9 h for all
  16 with two jobs (16 x 36 min / 2), to be run in two pieces of under 3 h (an interrupted
  generation continues: see :mod:`eqcg.systems.electrolyte`). Measured over the whole
  generation: 33.3 and 33.6 min for the last two systems (whole runs, two jobs and nothing
  else on the CPU), so ~4.5 h for the 16.
* ``paper`` — realistic (hours per system): 50 systems over five chain lengths, six salt
  ratios (Li:EO 1:33 to 1:8) and three temperatures, 2 ns NPT, 10 ns production with a frame
  every 2 ps (the reference work used 50 ns; pass a modified :class:`ElectrolytePreset` for
  that).
"""

from __future__ import annotations

from dataclasses import dataclass

from eqcg.systems import peo_litfsi_forcefield as ff


@dataclass(frozen=True)
class ElectrolytePreset:
    """How to build and simulate a family of electrolyte systems.

    Attributes:
        name: preset name.
        chains: choices of ``(n_chains, n)`` with ``n`` EO units per chain.
        li_eo_ratios: choices of the target [Li]/[EO] ratio (rounded to whole ion pairs).
        temperatures: choices of temperature (K).
        n_systems: default number of systems.
        compress_ps: length of the compression (ps, at 1 fs).
        npt_ps: NPT equilibration at 1 atm (ps).
        production_ps: NVT production (ps).
        frame_interval_ps: time between recorded frames (ps).
        restart_every_ps: production time between restart files (ps, rounded to whole
            frames): an interrupted run continues from the last one.
        compress_chunks: number of separate ``fix deform`` runs the compression is split into.
        dt_ps: MD time step of NPT and production (ps; 2 fs with SHAKE on C-H).
        compress_dt_ps: MD time step of the compression (ps).
        charge_scale: factor on the ion charges (e).
        cutoff: LJ and real-space Coulomb cut-off (Å).
        kspace_accuracy: PPPM relative force accuracy.
        pack_density: density of the randomly packed starting box (g/cm^3).
        target_density: density the compression ends at (g/cm^3); NPT then relaxes it.
        pressure_atm: NPT pressure (atm).
    """

    name: str
    chains: tuple[tuple[int, int], ...]
    li_eo_ratios: tuple[float, ...]
    temperatures: tuple[float, ...]
    n_systems: int
    compress_ps: float
    npt_ps: float
    production_ps: float
    frame_interval_ps: float
    restart_every_ps: float = 10.0
    compress_chunks: int = 5
    dt_ps: float = 0.002
    compress_dt_ps: float = 0.001
    charge_scale: float = ff.DEFAULT_CHARGE_SCALE
    cutoff: float = 10.0
    kspace_accuracy: float = 1e-4
    pack_density: float = 0.1
    target_density: float = 1.1
    pressure_atm: float = 1.0

    @property
    def timestep(self) -> float:
        """MD time step of NPT and production (ps)."""
        return self.dt_ps

    @property
    def frame_interval(self) -> float:
        """Time between recorded frames (ps)."""
        return self.frame_interval_ps


PRESETS: dict[str, ElectrolytePreset] = {
    "tiny": ElectrolytePreset(
        name="tiny", chains=((3, 12),), li_eo_ratios=(1 / 18, 1 / 12),
        temperatures=(400.0, 450.0), n_systems=2, compress_ps=10.0, npt_ps=10.0,
        production_ps=30.0, frame_interval_ps=0.5, cutoff=8.0,
    ),
    "small": ElectrolytePreset(
        name="small", chains=((10, 15), (15, 10), (6, 25)), li_eo_ratios=(0.05, 0.08),
        temperatures=(353.0, 400.0, 450.0), n_systems=4, compress_ps=20.0, npt_ps=50.0,
        production_ps=200.0, frame_interval_ps=2.0,
    ),
    "medium": ElectrolytePreset(
        name="medium", chains=((4, 15), (6, 10)), li_eo_ratios=(0.05, 1 / 12, 0.125),
        temperatures=(425.0, 475.0, 525.0), n_systems=16, compress_ps=20.0, npt_ps=50.0,
        production_ps=250.0, frame_interval_ps=2.0, cutoff=8.0,
    ),
    "transport": ElectrolytePreset(
        name="transport", chains=((6, 24), (8, 18)), li_eo_ratios=(1 / 12, 0.125),
        temperatures=(425.0, 475.0, 525.0), n_systems=16, compress_ps=20.0, npt_ps=50.0,
        production_ps=1000.0, frame_interval_ps=2.0, cutoff=8.0,
    ),
    "paper": ElectrolytePreset(
        name="paper", chains=((20, 8), (15, 10), (10, 15), (6, 25), (5, 30)),
        li_eo_ratios=(0.03, 0.05, 0.067, 0.083, 0.1, 0.125),
        temperatures=(353.0, 400.0, 450.0), n_systems=50, compress_ps=40.0, npt_ps=2000.0,
        production_ps=10000.0, frame_interval_ps=2.0,
    ),
}
