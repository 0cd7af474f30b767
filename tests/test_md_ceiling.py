"""The MD ceiling (eqcg.evaluation.ceiling, benchmarks/md_ceiling.py) on random walks of known D."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import scipy.stats

from eqcg.cg.mapping import CGSettings
from eqcg.config import load_config
from eqcg.data.store import load_dataset, write_dataset
from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.evaluation.ceiling import LI, md_ceiling
from eqcg.graphs.windows import split_systems

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "electrolyte_baseline.yaml"  # molecules of <= 15 atoms: one bead
SETTINGS = CGSettings(cg_level=7, whole_molecule_max_atoms=15, seed=0)
N_SYSTEMS, N_FRAMES, FRAME_INTERVAL = 6, 120, 2.0  # ps
N_LI, N_MOLECULES = 12, 6
MOLECULE = "C+O"  # a rigid C-O-C molecule (one bead)
SEPARATED = 0.01 * 4.0 ** np.arange(N_SYSTEMS)  # Å²/ps: Li D a factor 4 apart
D_ALIKE, D_MOLECULE = 0.1, 0.05  # Å²/ps


def _walk(d: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``(N_FRAMES, n, 3)`` random walks of diffusivity ``d`` (Å²/ps) from random starts."""
    steps = np.sqrt(2 * d * FRAME_INTERVAL) * rng.normal(size=(N_FRAMES, n, 3))
    steps[0] = 30.0 * rng.random((n, 3))
    return np.cumsum(steps, axis=0)


def _system(index: int, d_li: float, d_molecule: float, rng: np.random.Generator):
    """Li ions and rigid C-O-C molecules diffusing with ``d_li`` and ``d_molecule``."""
    shape = np.array([[-1.2, 0.0, 0.0], [0.0, 0.4, 0.0], [1.2, 0.0, 0.0]])
    molecules = (_walk(d_molecule, N_MOLECULES, rng)[:, :, None] + shape).reshape(N_FRAMES, -1, 3)
    types = np.r_[np.tile([0, 1, 0], N_MOLECULES), np.full(N_LI, 2)]
    bonds = np.concatenate([[[3 * k, 3 * k + 1], [3 * k + 1, 3 * k + 2]]
                            for k in range(N_MOLECULES)])
    return SystemTrajectory(
        name=f"box{index}",
        topology=Topology(masses=np.array([12.011, 15.999, 6.94])[types], types=types,
                          type_names=["C", "O", "Li"], bonds=bonds,
                          bond_types=np.zeros(len(bonds), dtype=np.int64)),
        positions=np.concatenate([molecules, _walk(d_li, N_LI, rng)], axis=1),
        box=np.tile(np.diag([30.0, 30.0, 30.0]), (N_FRAMES, 1, 1)),
        time=FRAME_INTERVAL * np.arange(N_FRAMES), pbc=True, units="real",
        attrs={"temperature_K": 400.0 + 25 * index, "n_salt": N_LI},
    )


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    """``separated``: Li D a factor 4 apart between boxes, the molecules' all alike;
    ``alike``: the Li D of every box alike."""
    root = tmp_path_factory.mktemp("ceiling")
    rng = np.random.default_rng(0)
    return {name: write_dataset(root / name, [_system(i, d_li[i], D_MOLECULE, rng)
                                              for i in range(N_SYSTEMS)]).parent
            for name, d_li in (("separated", SEPARATED),
                               ("alike", np.full(N_SYSTEMS, D_ALIKE)))}


def _script():
    spec = importlib.util.spec_from_file_location("md_ceiling", REPO / "benchmarks" /
                                                  "md_ceiling.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numpy_msd(positions: np.ndarray, masses: np.ndarray, time: np.ndarray):
    """Directly: the system's centre-of-mass drift removed from ``(n_frames, n, 3)``
    ``positions``, each particle's MSD over every time origin by explicit differences; returns
    the lags 10-50 % of the span (ps) and ``(n_lags, n)`` MSDs there (Å²)."""
    com = (masses[None, :, None] * positions).sum(1) / masses.sum()
    positions = positions - (com - com[0])[:, None, :]
    n = positions.shape[0]
    msd = np.array([((positions[k:] - positions[: n - k]) ** 2).sum(-1).mean(0)
                    for k in range(n)])
    lags = time - time[0]
    inside = (lags >= 0.1 * lags[-1] - 1e-9) & (lags <= 0.5 * lags[-1] + 1e-9)
    return lags[inside], msd[inside]


def _numpy_fit(lags: np.ndarray, msd: np.ndarray) -> tuple[float, float]:
    """D = slope / 6 of the mean MSD's line (Å²/ps), and its standard error from each
    particle's own line."""
    each = np.polyfit(lags, msd, 1)[0] / 6
    return np.polyfit(lags, msd.mean(1), 1)[0] / 6, each.std(ddof=1) / np.sqrt(each.size)


def test_diffusivities_equal_an_independent_msd_fit(datasets):
    """One box's D of Li and of the molecule, whole and per half, against direct numpy."""
    with load_dataset(datasets["separated"]) as dataset:
        system = dataset["box2"]
        ceiling = md_ceiling(dataset, ["box2"], SETTINGS).to_dict()
        positions = np.asarray(system.positions[()], dtype=np.float64)
    masses = system.topology.masses
    atoms = positions[:, : 3 * N_MOLECULES].reshape(N_FRAMES, N_MOLECULES, 3, 3)
    beads = np.concatenate([np.einsum("fmad,a->fmd", atoms, masses[:3] / masses[:3].sum()),
                            positions[:, 3 * N_MOLECULES :]], axis=1)
    bead_masses = np.r_[np.full(N_MOLECULES, masses[:3].sum()), np.full(N_LI, masses[-1])]
    members = {MOLECULE: slice(0, N_MOLECULES), LI: slice(N_MOLECULES, None)}
    half = N_FRAMES // 2
    frames = {"whole": slice(None), "half1": slice(0, half), "half2": slice(half, 2 * half)}
    reported = ceiling["systems"]["box2"]["diffusivity"]
    for part, index in frames.items():
        lags, msd = _numpy_msd(beads[index], bead_masses, system.time[index])
        for species, beads_of in members.items():
            d, stderr = _numpy_fit(lags, msd[:, beads_of])
            record = reported[species][part]
            assert record["value_native"] == pytest.approx(d, rel=1e-9)
            assert record["value"] == pytest.approx(d * 1e-4, rel=1e-9)  # cm²/s
            assert record["stderr_native"] == pytest.approx(stderr, rel=1e-9)
            assert record["stderr"] == pytest.approx(stderr * 1e-4, rel=1e-9)
    assert ceiling["systems"]["box2"]["conditions"] == {"temperature": 450.0, "n_salt": N_LI}
    assert ceiling["systems"]["box2"]["n_beads"] == {MOLECULE: N_MOLECULES, LI: N_LI}


def test_separated_diffusivities_rank_and_alike_ones_do_not(datasets):
    results = {}
    for name, path in datasets.items():
        with load_dataset(path) as dataset:
            results[name] = md_ceiling(dataset, dataset.names, SETTINGS)
    separated, alike = results["separated"], results["alike"]
    assert list(separated.species) == [LI, MOLECULE]  # Li first
    li = separated.species[LI]
    assert li.agreement.spearman_rho == pytest.approx(1.0) and li.ranks
    assert li.agreement.intervals["spearman_rho"] == [pytest.approx(1.0)] * 2
    assert li.agreement.within_2x == 1.0
    assert "the set can rank Li+ mobility" in separated.verdict
    assert alike.species[LI].ranks is False
    assert "the set cannot rank Li+ mobility" in alike.verdict
    for species, d in ((LI, D_ALIKE), (MOLECULE, D_MOLECULE)):  # the D put in, in cm²/s
        whole = [s.value(species, "whole") for s in alike.systems.values()]
        assert np.mean(whole) == pytest.approx(d * 1e-4, rel=0.25)


def test_command_line_writes_the_json_markdown_and_figure(datasets, tmp_path, capsys):
    """The default systems are the config's test split; the JSON's Spearman is scipy's of its
    own half values; two systems give no Spearman and say why."""
    script = _script()
    out = tmp_path / "ceiling"
    script.main(["--data", str(datasets["separated"]), "--config", str(CONFIG),
                 "--set", "data.split=[0.5, 0.0, 0.5]", "--out", str(out)])
    printed = capsys.readouterr().out
    result = json.loads((out / "md_ceiling.json").read_text())
    names = [f"box{i}" for i in range(N_SYSTEMS)]
    data = load_config(CONFIG, ["data.split=[0.5, 0.0, 0.5]"]).data
    assert list(result["systems"]) == split_systems(names, data.split, data.split_seed)[2]
    assert len(result["systems"]) == 3
    for species, entry in result["species"].items():
        halves = [[s["diffusivity"][species][part]["value"] for s in result["systems"].values()]
                  for part in ("half1", "half2")]
        expected = scipy.stats.spearmanr(*halves).statistic
        assert entry["agreement"]["spearman_rho"] == pytest.approx(expected, abs=1e-12)
    assert result["verdict"] in printed
    markdown = (out / "md_ceiling.md").read_text()
    assert result["verdict"] in markdown and "![" in markdown
    assert "| system | temperature | n_salt | beads |" in markdown
    pixels = matplotlib.image.imread(out / "md_ceiling.png")
    assert pixels.shape[0] > 100 and np.ptp(pixels) > 0

    script.main(["--data", str(datasets["separated"]), "--config", str(CONFIG),
                 "--systems", "box0", "box1", "--out", str(tmp_path / "two")])
    markdown = (tmp_path / "two" / "md_ceiling.md").read_text()
    assert "Li+ Spearman n/a (needs >= 3 systems)" in markdown
    assert "| Li | 2 | n/a (needs >= 3 systems) |" in markdown
    with pytest.raises(SystemExit, match="no systems"):
        script.main(["--data", str(datasets["separated"]), "--config", str(CONFIG),
                     "--systems", "nope", "--out", str(tmp_path / "none")])


@pytest.mark.slow
def test_on_lammps_electrolyte(electrolyte_data, tmp_path):
    """The tiny LAMMPS boxes: Li, TFSI and PEO beads each get D; two boxes give no verdict."""
    _script().main(["--data", str(electrolyte_data), "--config", str(CONFIG),
                    "--systems", "all", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "md_ceiling.json").read_text())
    assert result["units"]["diffusivity"] == "cm^2/s"
    assert len(result["species"]) >= 3 and next(iter(result["species"])) == LI
    for system in result["systems"].values():
        li = system["diffusivity"][LI]["whole"]
        assert li["value"] > 0 and li["stderr"] > 0
        assert {"temperature", "n_salt", "li_eo_ratio", "chain_length"} <= set(
            system["conditions"])
    assert "n/a (needs >= 3 systems)" in result["verdict"]
