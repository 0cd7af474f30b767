"""The temperature trend of diffusivities at fixed salt: aggregate(), the comparison columns and
metrics.json written before it existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from eqcg.data.trajectory import SystemTrajectory, Topology
from eqcg.evaluation import compare
from eqcg.evaluation.aggregate import aggregate
from eqcg.evaluation.comparison import comparison_row
from eqcg.evaluation.figures import comparison_panels
from eqcg.evaluation.provenance import read_report
from eqcg.evaluation.results import (
    DEFINITIONS,
    EXACT,
    METRICS_FILE,
    VIEWS,
    ComparisonRow,
    EvaluationSummary,
    FrameCounts,
    Span,
    Speed,
    SystemEvaluation,
    TrendEntry,
)

LI, OTHER = "diffusivity[Li]", "diffusivity[C]"
TREND_COLUMNS = ("diffusivity_t_rising_model", "diffusivity_t_rising_md",
                 "diffusivity_t_same_order")
# (li_eo_ratio, temperature K, Li D model, Li D MD): 2 salts x 3 temperatures, listed out of
# temperature order, and two systems of the first salt whose D is undefined in one view
SYSTEMS = [
    (0.05, 450.0, 3.0, 2.0),
    (0.05, 400.0, 1.0, 1.0),
    (0.10, 500.0, 6.0, 5.0),
    (0.05, 500.0, 2.0, 4.0),
    (0.10, 400.0, 5.0, 3.0),
    (0.10, 450.0, 4.0, 2.0),
    (0.05, 550.0, np.nan, 10.0),
    (0.05, 600.0, 20.0, None),
]
# worked out by hand from SYSTEMS (the last two left out), lower temperature first:
# salt 0.05: 400-450 model up, MD up, same; 400-500 up, up, same; 450-500 down, up, differ
# salt 0.10: 400-450 down, down, same; 400-500 up, up, same; 450-500 up, up, same
PAIRS, RISING_MODEL, RISING_MD, SAME_ORDER = 6, 4 / 6, 5 / 6, 5 / 6


def _evaluation(conditions: dict[str, float], model: dict[str, float | None],
                md: dict[str, float | None]) -> SystemEvaluation:
    """A stable system whose model views hold ``model`` and reference views ``md``."""
    values = {view: dict(model if view.startswith("model") else md) for view in VIEWS}
    values[EXACT] = {}  # as evaluate writes it where no exact value is known
    return SystemEvaluation(
        reference_system="ref", model="m", n_beads=2, species={"Li": 1, "C": 1},
        cg_settings={}, frames=FrameCounts(10, 10, 10, 10, 0, 1, 1.0),
        span=Span(9.0, 9.0, 9.0, "ps"), reference_covers_rollout=True,
        stability={"model": {"finite": True, "collision_free": True, "stable": True,
                             "first_collision_frame": None, "total_collisions": 0},
                   "reference_matched": {"collision_free": True}},
        properties={view: {} for view in VIEWS}, values=values, distribution_distance={},
        speed=Speed("ns/h", 1.0, 2.0), conditions=conditions)


def _electrolytes(rows=SYSTEMS) -> dict[str, SystemEvaluation]:
    """``rows`` as evaluations; the C beads' D falls with temperature in both views."""
    return {f"sys{i}": _evaluation({"temperature": t, "li_eo_ratio": salt},
                                   {LI: d_model, OTHER: 1 / t}, {LI: d_md, OTHER: 1 / t})
            for i, (salt, t, d_model, d_md) in enumerate(rows)}


def _summary(systems: dict[str, SystemEvaluation]) -> EvaluationSummary:
    return EvaluationSummary(
        label="rollout", model="m", nll=None, rollout="rollout.h5", reference="ref.h5",
        units={"name": "real", "length": "Å", "time": "ps", "diffusivity": "cm^2/s"},
        options={}, views=VIEWS, definitions=DEFINITIONS, systems=systems,
        aggregate=aggregate(systems, "real"), calibration={})


def test_same_salt_pairs_at_different_temperatures_against_hand_counts():
    trend = aggregate(_electrolytes(), "real").temperature_trend
    assert set(trend) == {LI, OTHER}
    li = trend[LI]
    assert li.pairs == PAIRS
    assert li.rising_model == pytest.approx(RISING_MODEL)
    assert li.rising_md == pytest.approx(RISING_MD)
    assert li.same_order == pytest.approx(SAME_ORDER)
    # C: D finite everywhere, falling with T in both views: 5 * 4 / 2 pairs of salt 0.05 (all
    # five temperatures differ) and 3 of salt 0.10
    assert trend[OTHER] == TrendEntry(pairs=10 + 3, rising_model=0.0, rising_md=0.0,
                                      same_order=1.0)


def test_systems_without_a_salt_share_one_and_without_a_temperature_are_left_out():
    systems = {"a": _evaluation({"temperature": 300.0}, {LI: 1.0}, {LI: 2.0}),
               "b": _evaluation({"temperature": 350.0}, {LI: 2.0}, {LI: 1.0}),
               "c": _evaluation({"temperature": 400.0, "li_eo_ratio": 0.05},
                                {LI: 3.0}, {LI: 3.0}),
               "d": _evaluation({"li_eo_ratio": 0.05}, {LI: 4.0}, {LI: 4.0})}
    # one pair (a, b): the model's D rises, the MD's falls
    assert aggregate(systems, "real").temperature_trend[LI] == TrendEntry(1, 1.0, 0.0, 0.0)


def test_no_temperature_difference_gives_no_pairs_and_no_fractions():
    rows = [(salt, 450.0, d, d) for salt, _, d, _ in SYSTEMS[:6]]
    trend = aggregate(_electrolytes(rows), "real").temperature_trend
    assert trend[LI] == TrendEntry(0, None, None, None)
    row = comparison_row("same T", Path("report"), _summary(_electrolytes(rows)))
    assert all(getattr(row, column) is None for column in TREND_COLUMNS)
    shown = {next(iter(p.series)) for p in comparison_panels([row], ["ns/h"])}
    assert not shown & set(TREND_COLUMNS)


def test_comparison_row_carries_the_li_trend_after_the_md_ceiling():
    row = comparison_row("rollout", Path("report"), _summary(_electrolytes()))
    assert (row.diffusivity_t_rising_model, row.diffusivity_t_rising_md,
            row.diffusivity_t_same_order) == pytest.approx((RISING_MODEL, RISING_MD, SAME_ORDER))
    assert not set(TREND_COLUMNS) & set(row.intervals)
    names = list(ComparisonRow.columns())
    at = names.index("diffusivity_md_halves_within_1_5x")
    assert tuple(names[at + 1:at + 4]) == TREND_COLUMNS
    assert ComparisonRow.readings()["diffusivity_t_rising_md"] == "the MD's value"


def test_conditions_hold_the_temperature_and_the_salt_attrs():
    system = SystemTrajectory(
        name="box", topology=Topology(np.ones(1), np.zeros(1), ["X"], np.zeros((0, 2)),
                                      np.zeros(0)),
        positions=np.zeros((1, 1, 3)), box=np.zeros((1, 3, 3)), time=np.zeros(1), pbc=False,
        units="real", attrs={"temperature_K": 450, "n_salt": 12, "li_eo_ratio": 0.125,
                             "preset": "transport"})
    assert system.conditions == {"temperature": 450.0, "n_salt": 12.0, "li_eo_ratio": 0.125}
    system.attrs = {"chain_length": 24}
    assert system.conditions == {"chain_length": 24.0}


def test_metrics_json_from_before_the_trend_still_reads_and_compares(tmp_path):
    summary = _summary(_electrolytes())
    data = summary.to_dict()
    assert EvaluationSummary.from_dict(data).to_dict() == data
    assert data["systems"]["sys0"]["conditions"] == {"temperature": 450.0, "li_eo_ratio": 0.05}
    for system in data["systems"].values():
        del system["conditions"]
    del data["aggregate"]["temperature_trend"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / METRICS_FILE).write_text(json.dumps(data))
    old = read_report(tmp_path / "old")
    assert old.systems["sys0"].conditions == {} and old.aggregate.temperature_trend == {}
    content = compare([tmp_path / "old"], tmp_path / "comparison")
    assert all(content["rows"][0][column] is None for column in TREND_COLUMNS)
    assert set(TREND_COLUMNS) <= set(content["columns"])
    assert "D rises with T at fixed salt, MD" in (tmp_path / "comparison"
                                                  / "comparison.md").read_text()
