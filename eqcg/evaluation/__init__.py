"""Evaluation of learned rollouts against reference MD: metrics, plots, reports, comparisons.

* :func:`~eqcg.evaluation.report.evaluate` — one rollout directory vs its reference dataset
  (per system: :mod:`~eqcg.evaluation.system_evaluation`; over systems:
  :mod:`~eqcg.evaluation.aggregate`; figures: :mod:`~eqcg.evaluation.figures`; ``report.md``:
  :mod:`~eqcg.evaluation.report_markdown`).
* :func:`~eqcg.evaluation.comparison.compare` — several evaluations side by side.
* :mod:`~eqcg.evaluation.results` — the typed results both write (``metrics.json``,
  ``comparison.json``) and read back.
* :mod:`~eqcg.evaluation.ceiling` — the MD ceiling of a dataset: how well the MD's own halves
  agree on each species' diffusivity over systems (``benchmarks/md_ceiling.py``).
"""

from eqcg.evaluation.comparison import compare
from eqcg.evaluation.properties import PropertyOptions
from eqcg.evaluation.report import evaluate

__all__ = ["PropertyOptions", "compare", "evaluate"]
