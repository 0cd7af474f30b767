"""Config loading: every shipped config validates; bad keys and values are named; variant
sections stay plain until the registry resolves them; old flat keys migrate."""

import logging
from pathlib import Path

import pytest

from eqcg.commands.ablation import load_spec, training_runs, variant_config
from eqcg.config import Config, config_from_dict, load_config, save_config
from eqcg.errors import ConfigError
from eqcg.models.registry import check_variant

ROOT = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(p for p in ROOT.rglob("*.yaml") if "ablation" not in p.parts)
SPECS = sorted((ROOT / "ablation").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.name))
def test_shipped_configs_validate(path):
    config = load_config(path)
    assert config.model.variant in {"baseline", "equivariant"}
    check_variant(config.model, str(path))


def test_equivariant_configs_share_everything_else_with_the_baseline():
    for system in ("polymer", "electrolyte"):
        base = load_config(f"configs/{system}_baseline.yaml").to_dict()
        equi = load_config(f"configs/{system}_equivariant.yaml").to_dict()
        assert base["data"] == equi["data"] and base["train"] == equi["train"]
        assert base["score"] == equi["score"]


def test_unknown_key_is_named_with_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  latent_dims: 64\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'model.latent_dims'"):
        load_config(path)


def test_mistyped_and_out_of_range_values_are_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  batch_size: eight\n")
    with pytest.raises(ConfigError, match="train.batch_size must be an integer"):
        load_config(path)
    path.write_text("model:\n  radius: -1\n")
    with pytest.raises(ConfigError, match="model.radius must be a finite number > 0"):
        load_config(path)
    path.write_text("train:\n  max_beads: -5\n")
    with pytest.raises(ConfigError, match="train.max_beads must be an integer >= 0"):
        load_config(path)
    # the variant is checked against the registry (which imports torch), not by the loader
    path.write_text("model:\n  variant: transformer\n")
    with pytest.raises(ConfigError, match="unknown model.variant 'transformer'"):
        check_variant(load_config(path).model, str(path))
    path.write_text("model:\n  variant: baseline\n  covariance: full\n")
    with pytest.raises(ConfigError, match="not supported by variant 'baseline'"):
        check_variant(load_config(path).model, str(path))


def test_overrides_are_validated_and_round_trip(tmp_path):
    config = load_config("configs/polymer_baseline.yaml", ["model.latent_dim=16", "train.lr=0.01"])
    assert config.model.latent_dim == 16 and config.train.lr == 0.01
    with pytest.raises(ConfigError, match="unknown key 'train.learning_rate'"):
        load_config("configs/polymer_baseline.yaml", ["train.learning_rate=0.1"])
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == config
    assert Config().to_dict()["data"]["split"] == [0.6, 0.2, 0.2]


@pytest.mark.parametrize("path", SPECS, ids=lambda p: str(p.name))
def test_shipped_ablation_specs_validate(path):
    """Every shipped spec loads and compares the two model families."""
    spec = load_spec(path)
    assert "equivariant" in spec.variants
    families = {variant_config(spec, name).model.variant for name in spec.variants}
    assert families == {"baseline", "equivariant"}


def test_ablation_spec_errors_name_the_key(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("data: {generate: polymer}\nconfig: x.yaml\nvariants: {a: []}\nrollouts: {}\n")
    with pytest.raises(ConfigError, match="unknown key 'rollouts'"):
        load_spec(path)
    path.write_text(f"data: {{path: d}}\nconfig: {ROOT / 'polymer_baseline.yaml'}\n"
                    "variants: {a: [model.latent_dimm=3]}\n")
    with pytest.raises(ConfigError, match="model.latent_dimm"):
        load_spec(path)


def test_variant_sections_are_overridden_resolved_and_round_trip(tmp_path):
    config = load_config("configs/polymer_equivariant.yaml",
                         ["model.equivariant.vector_channels=8"])
    assert config.model.options == {"equivariant": {"vector_channels": 8, "lmax": 1,
                                                    "radial_basis": 8}}
    resolved = check_variant(config.model, config.source)
    assert resolved.options["equivariant"] == {"vector_channels": 8, "lmax": 1,
                                               "radial_basis": 8, "avg_neighbors": 10.0}
    assert check_variant(resolved, "again") == resolved
    saved = Config(data=config.data, model=resolved, score=config.score, train=config.train)
    save_config(saved, tmp_path / "saved.yaml")
    assert "  equivariant:\n    vector_channels: 8\n" in (tmp_path / "saved.yaml").read_text()
    assert load_config(tmp_path / "saved.yaml") == saved


def test_variant_section_errors_name_the_key_and_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  variant: equivariant\n  covariance: full\n"
                    "  equivariant: {vector_chanels: 8}\n")
    config = load_config(path)
    with pytest.raises(ConfigError,
                       match=r"c.yaml: unknown key 'model.equivariant.vector_chanels'"):
        check_variant(config.model, config.source)
    path.write_text("model:\n  equivarient: {lmax: 2}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown key 'model.equivarient' \(neither"):
        check_variant(load_config(path).model, str(path))
    path.write_text("model:\n  baseline: {lmax: 2}\n")
    with pytest.raises(ConfigError, match="variant 'baseline' takes no options"):
        check_variant(load_config(path).model, str(path))


def test_old_flat_keys_move_into_the_equivariant_section(caplog):
    old = Config().to_dict()
    old["model"].update(variant="equivariant", covariance="full", vector_channels=4, lmax=2,
                        radial_basis=6, avg_neighbors=12.0)
    with caplog.at_level(logging.WARNING, logger="eqcg.config"):
        config = config_from_dict(old, where="old.pt")
    assert "old.pt: keys of an older eqcg moved: " in caplog.text
    assert "model.lmax -> model.equivariant.lmax" in caplog.text
    assert config.model.options == {"equivariant": {"vector_channels": 4, "lmax": 2,
                                                    "radial_basis": 6, "avg_neighbors": 12.0}}
    assert check_variant(config.model, "old.pt").options == config.model.options
    old["model"]["equivariant"] = {"lmax": 1}
    with pytest.raises(ConfigError, match="model.lmax and model.equivariant.lmax are both given"):
        config_from_dict(old, where="old.pt")


def test_variants_that_differ_only_in_refinement_share_a_trained_run():
    spec = load_spec(ROOT / "ablation" / "polymer_medium.yaml")
    assert training_runs(spec) == {
        "baseline": "baseline", "baseline-seed1": "baseline-seed1",
        "equivariant": "equivariant", "equivariant-seed1": "equivariant-seed1",
        "equivariant-isotropic": "equivariant-isotropic",
        "equivariant-no-refinement": "equivariant",
    }
    assert spec.evaluate == {"group_by": "length_group"}
    assert variant_config(spec, "baseline").data.test_min_atoms == 80
