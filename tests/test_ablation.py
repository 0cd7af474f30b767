"""eqcg ablate end to end on tiny LAMMPS data: shared runs, per-variant refinement, groups."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from eqcg.commands.ablation import VARIANTS_FILE, run_ablation
from eqcg.models.checkpoint import CHECKPOINT_DIR, LAST

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = ["model.latent_dim=8", "model.embed_dim=8", "model.message_passing_steps=1",
         "model.score_message_passing_steps=1", "train.max_steps=2", "train.val_every=2",
         "train.batch_size=2", "train.val_windows=4", "data.history=3"]
EQUIVARIANT = ["model.variant=equivariant", "model.covariance=isotropic",
               "model.equivariant.vector_channels=2", "model.equivariant.radial_basis=2"]


def test_ablation_shares_runs_refines_per_variant_and_groups_systems(polymer_data, tmp_path,
                                                                     single_thread):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "data": {"path": str(polymer_data)},
        "config": str(CONFIGS / "polymer_baseline.yaml"),
        "set": SMALL,
        "rollout": {"steps": 3},
        "evaluate": {"group_by": "length_group"},
        "variants": {"baseline": [], "equivariant": EQUIVARIANT,
                     "equivariant-no-refinement": [*EQUIVARIANT, "rollout.refine=false"]},
    }))
    out = tmp_path / "ablation"
    comparison = run_ablation(spec, out, device="cpu")

    assert sorted(p.name for p in (out / "runs").iterdir()) == ["baseline", "equivariant"]
    variants = json.loads((out / VARIANTS_FILE).read_text())
    assert variants["equivariant-no-refinement"]["run"] == variants["equivariant"]["run"]
    assert variants["equivariant-no-refinement"]["parameters"] == \
        variants["equivariant"]["parameters"] != variants["baseline"]["parameters"]
    assert variants["equivariant"]["score_evaluations_per_step"] == 10
    assert variants["equivariant-no-refinement"]["score_evaluations_per_step"] == 0
    for name, refine in (("equivariant", True), ("equivariant-no-refinement", False)):
        recorded = json.loads((out / "rollouts" / name / "run.json").read_text())
        assert recorded["settings"]["refine"] is refine, name

    rows = json.loads((comparison / "comparison.json").read_text())["rows"]
    assert [row["label"] for row in rows] == [
        "baseline", "baseline [trained]", "equivariant", "equivariant [trained]",
        "equivariant-no-refinement", "equivariant-no-refinement [trained]"]

    last = out / "runs" / "equivariant" / CHECKPOINT_DIR / LAST
    before = last.stat().st_mtime_ns
    run_ablation(spec, out, device="cpu")  # everything done: nothing is redone
    assert last.stat().st_mtime_ns == before
