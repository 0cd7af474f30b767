#!/usr/bin/env bash
# Regenerates results/ablation/<name>/ from scratch: the reference MD, every variant's training,
# its rollout of the held-out systems, evaluation and the comparison (resumable: run
# it again after an interruption), then copies the small outputs here. Datasets, runs and
# trajectories stay in $WORK (default: ./ablation-work), never in the repository.
#   bash results/ablation/run.sh polymer_medium      # ~28 min of LAMMPS (2 jobs), then ~1 h per
#                                                    # two variants on one thread (see README)
#   bash results/ablation/run.sh polymer_transport   # the same data (15 min of LAMMPS here),
#                                                    # ~20-30 min per variant on one thread
#   bash results/ablation/run.sh electrolyte_medium  # ~50 min of LAMMPS (2 jobs), then
#                                                    # ~5-10 min per variant on one thread
#   JOBS=2 bash results/ablation/run.sh electrolyte_transport  # ~4.9 h of LAMMPS (2 jobs; it
#                                                    # continues where it stopped), then the
#                                                    # trained runs two at a time
# JOBS=N trains N runs at once (eqcg ablate --jobs N); one thread each.
set -euo pipefail
cd "$(dirname "$0")/../.."
name=${1:?usage: run.sh polymer_medium|polymer_transport|electrolyte_medium|electrolyte_transport}
work=${WORK:-ablation-work}/$name
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} eqcg ablate "configs/ablation/$name.yaml" --out "$work" \
  --jobs "${JOBS:-1}"
out=results/ablation/$name
mkdir -p "$out/plots"
cp "$work"/comparison/comparison.{md,json,csv} "$work/variants.json" "$out/"
# agreement plots of the variants named in $PLOTS (default: those the README shows)
for variant in ${PLOTS:-baseline equivariant equivariant-seed1 baseline-shared shared-keep-com shared-seed1-keep-com}; do
  if [ -d "$work/reports/$variant" ]; then
    cp "$work/reports/$variant/plots/agreement.png" "$out/plots/agreement_$variant.png"
  fi
done
if [ -d "$work/reports/shared-keep-com" ]; then  # one chain's dynamics, before and after
  for variant in equivariant shared-keep-com; do
    cp "$work/reports/$variant/plots/chain007/dynamics.png" \
      "$out/plots/dynamics_chain007_$variant.png"
  done
fi
if [ -d "$work/reports/equivariant/plots/peo18x8_li18_425K_000" ]; then  # one box's structure
  for variant in baseline equivariant; do
    cp "$work/reports/$variant/plots/peo18x8_li18_425K_000/structure.png" \
      "$out/plots/structure_peo18x8_li18_425K_000_$variant.png"
  done
fi
