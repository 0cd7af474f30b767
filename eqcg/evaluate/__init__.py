"""Evaluation of learned rollouts against reference MD: metrics, plots, reports, comparisons.

* :func:`~eqcg.evaluate.report.evaluate` — one rollout directory vs its reference dataset
  (per system: :mod:`~eqcg.evaluate.system_evaluation`; over systems:
  :mod:`~eqcg.evaluate.aggregate`; figures: :mod:`~eqcg.evaluate.figures`; ``report.md``:
  :mod:`~eqcg.evaluate.report_markdown`).
* :func:`~eqcg.evaluate.comparison.compare` — several evaluations side by side.
* :mod:`~eqcg.evaluate.results` — the typed results both write (``metrics.json``,
  ``comparison.json``) and read back.
* :mod:`~eqcg.evaluate.ceiling` — the MD ceiling of a dataset: how well the MD's own halves
  agree on each species' diffusivity over systems (``benchmarks/md_ceiling.py``).
"""

from eqcg.evaluate.comparison import compare
from eqcg.evaluate.properties import PropertyOptions
from eqcg.evaluate.report import evaluate

__all__ = ["PropertyOptions", "compare", "evaluate"]
