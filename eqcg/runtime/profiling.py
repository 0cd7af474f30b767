"""Names of the stages of a rollout step, as :func:`torch.profiler.record_function` labels.

The rollout loop and the layers it calls mark their work with these labels; a profiler run
(``benchmarks/step_breakdown.py``) adds up the time spent under each. Outside a profiler the
labels cost a few microseconds per step. Stages nest (the neighbour list runs inside the edge
construction, which runs inside the dynamics and score networks); the benchmark reports each
stage's time exclusive of the stages nested in it.
"""

from __future__ import annotations

EMBEDDING = "eqcg.embedding"  # topology features, once per rollout
NEIGHBOR_LIST = "eqcg.neighbor_list"  # radius search or Verlet-list filter
EDGES = "eqcg.edges"  # bonds merged with radius edges, displacements
DYNAMICS = "eqcg.dynamics"  # dynamics network (predict)
SCORE = "eqcg.score"  # one score-network evaluation
REFINEMENT = "eqcg.refinement"  # sampler arithmetic around the score evaluations
EXCLUDED_VOLUME = "eqcg.excluded_volume"  # the push-apart pass after refinement
INTEGRATOR = "eqcg.integrator"  # sampling the Gaussian, Euler step, history update
GUARDS = "eqcg.guards"  # non-finite / explosion checks, freezing bad systems
SAVE = "eqcg.save"  # saving frames and the save callback (I/O)

STAGES = (EMBEDDING, NEIGHBOR_LIST, EDGES, DYNAMICS, SCORE, REFINEMENT, EXCLUDED_VOLUME,
          INTEGRATOR, GUARDS, SAVE)
