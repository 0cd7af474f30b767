"""Measure E(3) and permutation equivariance of any variant (tests and ``eqcg check-equivariance``).

An input batch is rotated or reflected (``x -> x Rᵀ + t``, cell rows ``b -> b Rᵀ``) and every
output is compared with the transformed output of the original batch: the acceleration mean
must rotate, its covariance transform as ``R Σ Rᵀ``, the NLL stay put, the score rotate, and a
deterministic, refined rollout fed the rotated noise must equal the rotated rollout. Errors are
relative (max abs difference / max abs value). Run in float64 for meaningful small numbers.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Batch

from eqcg import keys
from eqcg.cg.mapping import CGSettings
from eqcg.config import Config, RolloutConfig, load_config
from eqcg.data.synthetic import random_system
from eqcg.graphs.system import CGSystem, TypeVocabulary
from eqcg.models.integrator import acceleration_target
from eqcg.models.registry import variants
from eqcg.models.simulator import Simulator
from eqcg.runtime.arguments import at_least
from eqcg.simulation.rollout import rollout


def random_orthogonal(generator: torch.Generator, improper: bool = False) -> torch.Tensor:
    """A Haar-random ``(3, 3)`` rotation (``improper``: times -1, a rotoreflection), float64."""
    q, r = torch.linalg.qr(torch.randn(3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if improper else q


def cube_symmetries() -> list[torch.Tensor]:
    """The 48 signed permutation matrices that map a cube onto itself."""
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1.0, -1.0), repeat=3):
            m = torch.zeros(3, 3, dtype=torch.float64)
            m[range(3), perm] = torch.tensor(signs, dtype=torch.float64)
            mats.append(m)
    return mats


def transform_batch(
    batch: Batch, rotation: torch.Tensor, shift: torch.Tensor, rotate_box: bool = True
) -> Batch:
    """``batch`` with positions ``x -> x Rᵀ + shift`` and (``rotate_box``) cell rows ``b Rᵀ``."""
    rotation = rotation.to(batch[keys.POS_HISTORY])
    shift = shift.to(batch[keys.POS_HISTORY])
    out = batch.clone()
    out[keys.POS_HISTORY] = batch[keys.POS_HISTORY] @ rotation.T + shift
    if keys.TARGET_POS in batch:
        out[keys.TARGET_POS] = batch[keys.TARGET_POS] @ rotation.T + shift
    if rotate_box:
        out[keys.BOX] = batch[keys.BOX] @ rotation.T
    return out


def permute_batch(batch: Batch, order: torch.Tensor) -> Batch:
    """``batch`` with beads reordered: new bead ``i`` is old bead ``order[i]``.

    ``order`` must keep every bead inside its own system.
    """
    new_index = torch.empty_like(order)
    new_index[order] = torch.arange(order.numel(), device=order.device)
    out = batch.clone()
    for key in (*keys.BEAD_FIELDS, "batch"):
        if key in batch:
            out[key] = batch[key][order]
    out[keys.ATOM_TO_BEAD] = new_index[batch[keys.ATOM_TO_BEAD]]
    out[keys.CG_BOND_INDEX] = new_index[batch[keys.CG_BOND_INDEX]]
    return out


def _relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = float(expected.abs().max())
    return float((actual - expected).abs().max()) / (scale if scale > 0 else 1.0)


@dataclass
class EquivarianceErrors:
    """Largest relative errors over the trials (0 is exact)."""

    mean: float
    covariance: float
    nll: float
    score: float
    rollout: float
    permutation: float


@torch.no_grad()
def _outputs(sim: Simulator, batch: Batch, noise: torch.Tensor, sigma: torch.Tensor) -> dict:
    history = batch[keys.POS_HISTORY]
    features = sim.embed(batch)
    pred = sim.predict(batch, history, features)
    target = acceleration_target(history, batch[keys.TARGET_POS])
    noisy = batch[keys.TARGET_POS] + sigma[:, None] * noise
    score = sim.score(batch, noisy, history[:, -1], sigma, features, pred.latent)
    return {"mean": pred.acceleration.mean, "covariance": pred.acceleration.marginal_covariance(),
            "nll": pred.acceleration.nll(target), "score": score}


def _rollout(sim: Simulator, batch: Batch, steps: int, seed: int, rotation: torch.Tensor | None,
             settings: RolloutConfig) -> torch.Tensor:
    generator = torch.Generator(device=batch[keys.POS_HISTORY].device).manual_seed(seed)

    def noise(like: torch.Tensor) -> torch.Tensor:
        z = torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)
        return z if rotation is None else z @ rotation.to(z).T

    result = rollout(sim, batch, steps, settings, noise=noise, show_progress=False)
    return result.positions


def measure_equivariance(
    simulator: Simulator,
    batch: Batch,
    *,
    n_trials: int = 4,
    seed: int = 0,
    rotate_box: bool = True,
    rollout_steps: int = 2,
) -> EquivarianceErrors:
    """Equivariance errors of ``simulator`` on ``batch`` (needs ``target_pos``).

    Trials alternate proper rotations and rotoreflections, each with a random translation.
    With ``rotate_box=False`` only the 48 cube symmetries are used (for a cubic box held fixed).
    ``n_trials`` below 1 is a :class:`~eqcg.errors.ConfigError` (no trial measures nothing).
    """
    at_least("n_trials (--trials)", n_trials, 1)
    generator = torch.Generator().manual_seed(seed)
    dtype = batch[keys.POS_HISTORY].dtype
    n = batch[keys.POS_HISTORY].shape[0]
    noise = torch.randn(n, 3, generator=generator, dtype=dtype).to(batch[keys.POS_HISTORY].device)
    sigma = simulator.sigmas[torch.randint(len(simulator.sigmas), (n,), generator=generator)
                             .to(simulator.sigmas.device)]
    # small constant Langevin steps: an untrained score network must not blow the rollout up
    settings = RolloutConfig(deterministic=True, langevin_steps=2, step_size=1e-4,
                             refine_levels=2, schedule="constant")
    reference = _outputs(simulator, batch, noise, sigma)
    reference_rollout = _rollout(simulator, batch, rollout_steps, seed, None, settings)
    cube = cube_symmetries()
    errors = dict.fromkeys(("mean", "covariance", "nll", "score", "rollout", "permutation"), 0.0)
    for trial in range(n_trials):
        if rotate_box:
            rotation = random_orthogonal(generator, improper=trial % 2 == 1)
            shift = 10.0 * torch.randn(3, generator=generator, dtype=torch.float64)
        else:
            rotation = cube[int(torch.randint(len(cube), (1,), generator=generator))]
            shift = torch.zeros(3, dtype=torch.float64)
        r = rotation.to(noise)
        moved = _outputs(simulator, transform_batch(batch, rotation, shift, rotate_box),
                         noise @ r.T, sigma)
        expected = {"mean": reference["mean"] @ r.T,
                    "covariance": r @ reference["covariance"] @ r.T,
                    "nll": reference["nll"], "score": reference["score"] @ r.T}
        for name, value in expected.items():
            errors[name] = max(errors[name], _relative(moved[name], value))
        moved_rollout = _rollout(simulator, transform_batch(batch, rotation, shift, rotate_box),
                                 rollout_steps, seed, rotation, settings)
        expected_rollout = reference_rollout @ r.cpu().T + shift.to(r).cpu()
        errors["rollout"] = max(errors["rollout"], _relative(moved_rollout, expected_rollout))
    order = torch.cat([
        start + torch.randperm(int(stop - start), generator=generator)
        for start, stop in zip(batch.ptr[:-1].tolist(), batch.ptr[1:].tolist())
    ]).to(batch[keys.POS_HISTORY].device)
    permuted = _outputs(simulator, permute_batch(batch, order), noise[order], sigma[order])
    for name in ("mean", "covariance", "score"):
        errors["permutation"] = max(errors["permutation"],
                                    _relative(permuted[name], reference[name][order]))
    return EquivarianceErrors(**errors)


def probe_batch(
    vocabulary: TypeVocabulary, history: int, *, pbc: bool, triclinic: bool = False,
    n_systems: int = 2, seed: int = 0,
) -> Batch:
    """Random float64 systems built from types the model knows, for equivariance checks."""
    first, second = vocabulary.bond_types[0].split("-")
    systems = []
    for i in range(n_systems):
        system = random_system(f"probe{i}", pbc=pbc, triclinic=triclinic, seed=seed + i,
                               n_frames=history + 1)
        top = system.topology
        top.type_names = [first, second, vocabulary.atom_types[0]]
        top.types[: -2] = np.arange(len(top.types) - 2) % 2
        systems.append(system)
    settings = CGSettings(cg_level=3, whole_molecule_max_atoms=1)
    graphs = [CGSystem.from_trajectory(s, settings, vocabulary).graph(
        np.arange(history), history, torch.float64) for s in systems]
    return Batch.from_data_list(graphs)


def _simulators_to_compare(target: str | os.PathLike) -> tuple[dict[str, Simulator], Config]:
    """The target's own simulator (trained if a run) plus every other registered variant with
    the same settings (the target's covariance where the variant supports it, else the
    variant's preferred one)."""
    from eqcg.models.checkpoint import load_simulator

    path = Path(target)
    if path.suffix in (".yaml", ".yml"):
        config = load_config(path)
        trained = None
        vocabulary = TypeVocabulary(("C", "Li", "O"), ("C-C", "C-O", "O-O"))
    else:
        trained, config, _ = load_simulator(path)
        vocabulary = trained.vocabulary
    sims: dict[str, Simulator] = {}
    for name, variant in variants().items():
        if trained is not None and config.model.variant == name:
            sims[name] = trained
            continue
        own = config.model.covariance
        covariance = own if own in variant.covariances else variant.covariances[0]
        torch.manual_seed(0)
        sims[name] = Simulator(replace(config.model, variant=name, covariance=covariance),
                               config.score, vocabulary, config.data.history,
                               velocity_scale=0.5, acceleration_scale=0.3)
    return {name: sim.double().eval() for name, sim in sims.items()}, config


def equivariance_table(
    target: str | os.PathLike, *, n_trials: int = 4, seed: int = 0
) -> dict[str, dict[str, dict[str, float]]]:
    """Equivariance errors of the target's model and of every other registered variant with
    its settings (:func:`measure_equivariance`), in three cases: case -> variant -> quantity
    -> largest relative error."""
    sims, config = _simulators_to_compare(target)
    cases = {
        "open boundaries, rotations+reflections": dict(pbc=False, triclinic=False, rotate=True),
        "triclinic cell rotated with positions": dict(pbc=True, triclinic=True, rotate=True),
        "cubic cell, its 48 symmetries": dict(pbc=True, triclinic=False, rotate=False),
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for case, spec in cases.items():
        table[case] = {}
        for name, sim in sims.items():
            batch = probe_batch(sim.vocabulary, config.data.history, pbc=spec["pbc"],
                                triclinic=spec["triclinic"], seed=seed)
            if not spec["rotate"]:
                cube = 15.0 * torch.eye(3, dtype=torch.float64)
                batch[keys.BOX] = cube.expand(batch.num_graphs, 3, 3)
            errors = measure_equivariance(sim, batch, n_trials=n_trials, seed=seed,
                                          rotate_box=spec["rotate"])
            table[case][name] = asdict(errors)
    return table


def format_equivariance_table(table: dict[str, dict[str, dict[str, float]]],
                              n_trials: int) -> str:
    """:func:`equivariance_table` as text: per case, one row per quantity and one column per
    variant."""
    lines = []
    for case, by_variant in table.items():
        widths = {name: max(12, len(name)) for name in by_variant}
        lines += ["", f"{case} (max relative error, float64, {n_trials} trials)",
                  f"  {'quantity':<12}" + "".join(f" {n:>{w}}" for n, w in widths.items())]
        lines += [f"  {q:<12}" + "".join(f" {by_variant[n][q]:>{w}.2e}"
                                         for n, w in widths.items())
                  for q in EquivarianceErrors.__dataclass_fields__]
    return "\n".join(lines)
