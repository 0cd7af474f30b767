#!/usr/bin/env bash
# Regenerates every table in results/speed/ (CPU, one thread; run on an otherwise idle machine,
# one benchmark at a time). The electrolyte `small` box takes ~30 min of LAMMPS the first time.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=results/speed
python benchmarks/learned_vs_lammps.py --copies 1 50 --compile --out "$out/learned_vs_lammps_tiny.json"
python benchmarks/learned_vs_lammps.py --preset small --copies 1 50 --compile \
  --out "$out/learned_vs_lammps_small.json"
python benchmarks/learned_vs_lammps.py --copies 1 50 --compile --match-parameters \
  --out "$out/learned_vs_lammps_tiny_matched.json"
python benchmarks/step_breakdown.py --copies 1 50 --steps 5 --out "$out/step_breakdown.json"
python benchmarks/step_cost.py --compile --out "$out/step_cost.json"
python benchmarks/scaling.py --out "$out/scaling.json"
python benchmarks/polymer_throughput.py --out "$out/polymer_throughput.json"
python benchmarks/polymer_throughput.py --data benchmarks/results/refine22/polymer-small \
  --chains 4 --copies 48 480 --neighbor-search verlet device --steps 3 --repeats 2 \
  --out "$out/polymer_throughput_search.json"
