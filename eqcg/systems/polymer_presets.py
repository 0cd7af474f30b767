"""Presets of the polymer system (:mod:`eqcg.systems.polymer`): sizes, run lengths, physics.

Light on purpose (no numpy, no LAMMPS): the system registry and the command line list these
without importing the generator.

Presets (:data:`PRESETS`):

* ``tiny`` — 4 chains of 16-24 beads, 200 frames (1e5 steps): seconds; tests and CI.
* ``small`` — 16 chains of 50-100 beads, 400 frames (2e5 steps): minutes; demos, benchmarks.
* ``medium`` — the ablation scale (``configs/ablation/polymer_medium.yaml``): 120 chains of
  20-60 beads plus 24 longer chains of 80-100 beads, 2010 frames (1e6 steps, 10^4 tau) each:
  about 40 min of one core. The longer chains are held out as unseen lengths
  (``data.test_min_atoms``); the others split into train/validation/test as usual.
* ``paper`` — 128 chains of 100-200 beads, 2001 frames (1e6 steps): hours; real training.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PolymerPreset:
    """Sizes, run lengths and physics of one polymer dataset.

    Attributes:
        n_systems: number of chains.
        n_beads: inclusive range of chain lengths, drawn uniformly per chain.
        phobic_fraction: range of the fraction of solvophobic beads, stratified over chains.
        n_frames: recorded frames per chain (the first at the start of production).
        steps_per_frame: MD steps between recorded frames.
        equil_steps: unrecorded equilibration steps before production.
        relax_steps: steps of ``fix nve/limit`` relaxing the initial walk.
        dt: MD time step (tau).
        temperature: Langevin temperature (epsilon / k_B).
        damp: Langevin damping time (tau).
        eps_phobic: LJ well depth between solvophobic beads (epsilon).
        cutoff_phobic: LJ cut-off between solvophobic beads (sigma).
        long_systems: extra chains with lengths drawn from ``long_n_beads`` (0: none).
        long_n_beads: inclusive range of the extra chains' lengths.
    """

    n_systems: int
    n_beads: tuple[int, int]
    n_frames: int
    equil_steps: int
    phobic_fraction: tuple[float, float] = (0.1, 0.9)
    steps_per_frame: int = 500
    relax_steps: int = 1000
    dt: float = 0.01
    temperature: float = 1.0
    damp: float = 1.0
    eps_phobic: float = 1.5
    cutoff_phobic: float = 2.5
    long_systems: int = 0
    long_n_beads: tuple[int, int] = (0, 0)

    @property
    def timestep(self) -> float:
        """MD time step (tau)."""
        return self.dt

    @property
    def frame_interval(self) -> float:
        """Time between recorded frames (tau)."""
        return self.dt * self.steps_per_frame

    @property
    def production_steps(self) -> int:
        """MD steps of the recorded run."""
        return (self.n_frames - 1) * self.steps_per_frame

    @property
    def total_steps(self) -> int:
        """MD steps of one chain's whole LAMMPS run."""
        return self.relax_steps + self.equil_steps + self.production_steps


PRESETS: dict[str, PolymerPreset] = {
    "tiny": PolymerPreset(n_systems=4, n_beads=(16, 24), n_frames=200, equil_steps=10_000),
    "small": PolymerPreset(n_systems=16, n_beads=(50, 100), n_frames=400, equil_steps=50_000),
    "medium": PolymerPreset(n_systems=120, n_beads=(20, 60), n_frames=2010, equil_steps=100_000,
                            long_systems=24, long_n_beads=(80, 100)),
    "paper": PolymerPreset(n_systems=128, n_beads=(100, 200), n_frames=2001, equil_steps=200_000),
}
