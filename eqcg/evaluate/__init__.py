"""Evaluation of learned rollouts against reference MD: metrics, plots, reports, comparisons.

* :func:`~eqcg.evaluate.report.evaluate` — one rollout directory vs its reference dataset.
* :func:`~eqcg.evaluate.report.compare` — several evaluations side by side.
"""

from eqcg.evaluate.properties import PropertyOptions
from eqcg.evaluate.report import compare, evaluate

__all__ = ["PropertyOptions", "compare", "evaluate"]
