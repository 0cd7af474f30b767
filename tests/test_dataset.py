"""On-disk dataset, windows, splits and batching."""

import h5py
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from eqcg import keys, load_dataset, write_dataset
from eqcg.cg import CGSettings
from eqcg.config import config_from_dict
from eqcg.errors import ConfigError, DataError
from eqcg.graphs.system import CGSystem, TypeVocabulary
from eqcg.graphs.windows import WindowDataset, split_of, split_systems
from eqcg.testing import random_system


def test_round_trip_preserves_every_field(tmp_path):
    systems = [random_system("a", n_frames=20), random_system("b", triclinic=True, seed=2)]
    systems[0].attrs = {"temperature": 400.0, "sequence": "ABAB"}
    write_dataset(tmp_path, systems, source="test")
    with load_dataset(tmp_path) as ds:
        assert ds.names == ["a", "b"] and ds.units == "real"
        for original in systems:
            loaded = ds[original.name]
            np.testing.assert_array_equal(loaded.positions[()], original.positions)
            np.testing.assert_array_equal(loaded.positions[3:7], original.positions[3:7])
            np.testing.assert_array_equal(loaded.box, original.box)
            np.testing.assert_array_equal(loaded.topology.bonds, original.topology.bonds)
            np.testing.assert_array_equal(loaded.topology.masses, original.topology.masses)
            assert loaded.topology.type_names == original.topology.type_names
            assert loaded.attrs == original.attrs
        chunks = ds._file["systems/a/positions"].chunks
        assert chunks[0] < 20  # chunked along time
        assert "a" in ds.summary() and "b" in ds.summary()


def test_bad_input_is_named_and_nothing_half_written(tmp_path):
    good = random_system("good")
    bad = random_system("bad")
    bad.positions[4, 7, 1] = np.nan
    with pytest.raises(DataError, match="frame 4, atom 7"):
        write_dataset(tmp_path, [good, bad])
    assert not any(tmp_path.iterdir())
    bad = random_system("bad")
    bad.topology.bonds[2] = [0, 999]
    with pytest.raises(DataError, match="bond 2"):
        write_dataset(tmp_path, [bad])
    bad = random_system("bad")
    bad.time[5] = bad.time[4]
    with pytest.raises(DataError, match="frame 5"):
        write_dataset(tmp_path, [bad])
    bad = random_system("bad")
    bad.units = "metal"
    with pytest.raises(DataError, match="unknown unit system 'metal'"):
        write_dataset(tmp_path, [bad])


def test_not_a_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "dataset.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        load_dataset(tmp_path)
    with h5py.File(tmp_path / "other.h5", "w"):
        pass
    with pytest.raises(DataError, match="not an eqcg trajectory dataset"):
        load_dataset(tmp_path / "other.h5")


@pytest.mark.parametrize("history,dilation", [(3, 1), (4, 3)])
def test_window_target_is_dilation_frames_after_last_history_frame(history, dilation):
    system = random_system("s", n_frames=30)
    vocab = TypeVocabulary.from_systems([system])
    cg = CGSystem.from_trajectory(system, CGSettings(cg_level=3), vocab)
    windows = WindowDataset([cg], history, dilation, dtype=torch.float64)
    assert len(windows) == 30 - history * dilation
    for item in (0, len(windows) - 1):
        graph = windows[item]
        start = windows.index[item][1]
        frames = start + dilation * np.arange(history)
        np.testing.assert_allclose(graph[keys.POS_HISTORY].numpy(),
                                   cg.bead_positions[frames].transpose(1, 0, 2))
        np.testing.assert_allclose(graph[keys.TARGET_POS].numpy(),
                                   cg.bead_positions[frames[-1] + dilation])


def test_batching_offsets_fine_and_coarse_indices():
    systems = [random_system("a"), random_system("b", n_chains=3, seed=4)]
    vocab = TypeVocabulary.from_systems(systems)
    cgs = [CGSystem.from_trajectory(s, CGSettings(cg_level=3), vocab) for s in systems]
    graphs = [cg.graph(np.arange(3), 3) for cg in cgs]
    batch = Batch.from_data_list(graphs)
    n_atoms0, n_beads0 = graphs[0][keys.ATOM_TYPES].shape[0], graphs[0].num_nodes
    assert batch[keys.BOX].shape == (2, 3, 3)
    second_atoms = batch[keys.ATOM_TO_BEAD][n_atoms0:]
    assert torch.equal(second_atoms, graphs[1][keys.ATOM_TO_BEAD] + n_beads0)
    n_fine0 = graphs[0][keys.FINE_EDGE_INDEX].shape[1]
    assert torch.equal(batch[keys.FINE_EDGE_INDEX][:, n_fine0:],
                       graphs[1][keys.FINE_EDGE_INDEX] + n_atoms0)
    n_cg0 = graphs[0][keys.CG_BOND_INDEX].shape[1]
    assert torch.equal(batch[keys.CG_BOND_INDEX][:, n_cg0:],
                       graphs[1][keys.CG_BOND_INDEX] + n_beads0)


def test_unknown_atom_type_names_system_and_atom():
    known = random_system("a")
    other = random_system("b")
    other.topology.type_names = ["C", "O", "Na"]
    vocab = TypeVocabulary.from_systems([known])
    with pytest.raises(DataError, match=r"system 'b', atom \d+: atom type 'Na'"):
        vocab.encode_atoms(other)


def test_split_is_by_system_and_deterministic():
    names = [f"s{i}" for i in range(10)]
    train, val, test = split_systems(names, (0.6, 0.2, 0.2), seed=1)
    assert sorted(train + val + test) == sorted(names)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    assert split_systems(names, (0.6, 0.2, 0.2), seed=1) == (train, val, test)
    assert split_systems(["a", "b", "c"], (0.6, 0.2, 0.2), seed=0)[0]
    assert split_systems(["a"], (1.0, 0.0, 0.0), seed=0) == (["a"], [], [])
    with pytest.raises(DataError, match="sum to 1"):
        split_systems(names, (0.5, 0.2, 0.2), seed=0)


def test_split_takes_named_systems_and_shares_the_rest_by_the_other_fractions():
    names = [f"s{i}" for i in range(16)]
    held_out = ["s3", "s0", "s9", "s12", "s5", "s14"]
    train, val, test = split_systems(names, (0.5, 0.125, 0.375), seed=0, test_systems=held_out)
    assert test == held_out  # exactly the named systems, in the order named
    # the other 10 are shared 0.5 : 0.125 between train and validation -> 8 : 2
    assert (len(train), len(val)) == (8, 2)
    assert sorted(train + val + test) == sorted(names)
    train2, val2, test2 = split_systems(names, (0.5, 0.125, 0.375), seed=0,
                                        val_systems=["s1", "s2"], test_systems=held_out)
    assert (val2, test2) == (["s1", "s2"], held_out)
    assert sorted(train2) == sorted(set(names) - {"s1", "s2", *held_out})
    # nothing named: the split of earlier runs, unchanged
    assert split_systems(names, (0.5, 0.125, 0.375), seed=0, val_systems=(),
                         test_systems=()) == split_systems(names, (0.5, 0.125, 0.375), seed=0)
    # named systems stay where named even when they are large enough for unseen sizes
    _, _, test3 = split_systems(names, (0.5, 0.25, 0.25), seed=0, n_atoms=[100] + [10] * 15,
                                test_min_atoms=80, val_systems=["s0"])
    assert "s0" not in test3


@pytest.mark.parametrize("kwargs, message", [
    ({"test_systems": ["s1", "nope"]}, r"data.test_systems names systems the dataset does not "
                                       r"hold: \['nope'\]"),
    ({"val_systems": ["s1", "s1"]}, "data.val_systems names a system twice"),
    ({"val_systems": ["s1"], "test_systems": ["s1", "s2"]},
     r"data.val_systems and data.test_systems both name \['s1'\]"),
    ({"test_systems": ["s0", "s1", "s2"]}, "besides the named ones are too few"),
])
def test_split_refuses_bad_named_systems(kwargs, message):
    with pytest.raises(DataError, match=message):
        split_systems(["s0", "s1", "s2"], (0.6, 0.2, 0.2), seed=0, **kwargs)


def test_named_split_reads_from_the_config():
    config = config_from_dict({"data": {"test_systems": ["b", "d"], "split": [0.5, 0.25, 0.25]}})
    assert config.data.test_systems == ("b", "d")
    assert split_of(list("abcdef"), [1] * 6, config.data)[2] == ["b", "d"]
    with pytest.raises(ConfigError, match="data.test_systems must be a list"):
        config_from_dict({"data": {"test_systems": "b"}})
    with pytest.raises(ConfigError, match="data.val_systems must be a string"):
        config_from_dict({"data": {"val_systems": [3]}})


def test_split_holds_out_every_system_of_unseen_size():
    names = [f"s{i}" for i in range(12)]
    n_atoms = [20, 30, 90, 25, 40, 85, 33, 21, 99, 50, 44, 38]
    train, val, test = split_systems(names, (0.5, 0.25, 0.25), seed=3, n_atoms=n_atoms,
                                     test_min_atoms=80)
    large = {"s2", "s5", "s8"}
    assert large <= set(test) and not large & set(train + val)
    assert sorted(train + val + test) == sorted(names)
    assert (len(train), len(val), len(test) - len(large)) == (5, 2, 2)  # 9 small systems
    assert split_systems(names, (0.5, 0.25, 0.25), seed=3, n_atoms=n_atoms,
                         test_min_atoms=0) == split_systems(names, (0.5, 0.25, 0.25), seed=3)
    with pytest.raises(DataError, match="too few"):
        split_systems(names[:3], (0.6, 0.2, 0.2), seed=0, n_atoms=[90, 90, 80],
                      test_min_atoms=80)
