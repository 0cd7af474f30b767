"""Shared fixtures: tiny reference datasets made once per test session by real LAMMPS runs."""

from pathlib import Path

import pytest

from eqcg.systems.electrolyte import generate_electrolyte
from eqcg.systems.polymer import generate_polymer


@pytest.fixture(scope="session")
def polymer_data(tmp_path_factory) -> Path:
    """4 tiny bead-spring chains (LJ units), generated with LAMMPS."""
    out = tmp_path_factory.mktemp("polymer")
    generate_polymer(out, preset="tiny", seed=0, n_systems=4, show_progress=False)
    return out


@pytest.fixture(scope="session")
def electrolyte_data(tmp_path_factory) -> Path:
    """2 tiny PEO/LiTFSI boxes (real units), generated with LAMMPS."""
    out = tmp_path_factory.mktemp("electrolyte")
    generate_electrolyte(out, preset="tiny", seed=0, n_systems=2, show_progress=False)
    return out
