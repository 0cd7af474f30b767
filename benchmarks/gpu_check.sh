#!/usr/bin/env bash
# GPU check (issue 22): the CUDA-relevant tests, learned simulators vs LAMMPS at 1-1000 copies,
# and a long rollout of held-out polymer chains with its peak GPU memory, in under 8 minutes on
# one GPU without network. Writes results/gpu/gpu_check-<device>.{json,md}.
#
# Prepare on a machine with network and LAMMPS (the GPU machines have neither), from the
# repository root; both folders are git-ignored and travel with the working tree (~35 MiB of
# the 64 MiB it may hold):
#   bash benchmarks/gpu_wheels.sh                    # .gpu-wheels/: mdtraj ase pymetis vesin
#                                                    #   vesin-torch, cp312 wheels (~15 MiB)
#   eqcg generate polymer --preset small --out .gpu-data/polymer-small --jobs 2
#   rm .gpu-data/polymer-small/lammps/*/traj.dump    # the benchmark reads only the logs
#   eqcg train configs/polymer_equivariant.yaml --data .gpu-data/polymer-small \
#       --out .gpu-data/run --max-steps 300 --device cpu
#   rm -r .gpu-data/run/tensorboard .gpu-data/run/checkpoints/last.pt
#   du -sh .gpu-wheels .gpu-data                     # keep the total well under 64 MiB
#
# On the GPU machine (carry .gpu-wheels and .gpu-data):
#   bash benchmarks/gpu_check.sh --data .gpu-data/polymer-small --run .gpu-data/run
#
# On the CPU (CI-sized, tests/test_gpu_check.py), so that the script cannot rot:
#   bash benchmarks/gpu_check.sh --device cpu --data DATA --run RUN --steps 3 --copies 1 \
#       --repeats 1 --no-compile --out OUT -- tests/test_rollout_sync.py -k verlet
#
# Arguments after `--` go to pytest (default: the CUDA runs of tests/test_cuda.py and
# tests/test_rollout_sync.py).
#
# Missing packages (vesin, mdtraj, ...) are installed from --wheels (default .gpu-wheels) into
# a temporary folder; eqcg runs from this checkout (PYTHONPATH), installed or not. Each phase
# has a wall-clock limit (--limits TESTS BENCHMARK ROLLOUT, seconds); a rollout stopped by its
# limit reports the steps it took. The rollout uses --neighbor-search (default device: no host
# sync per step; verlet: the vesin-based default of eqcg rollout). A failed phase does not stop the next; the exit status is 1
# when any phase failed or timed out.
set -uo pipefail

usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }

REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
DEVICE=cuda DATA="" RUN="" OUT="$REPO/results/gpu" STEPS=10000 COPIES="1 50 1000"
REPEATS=5 COMPILE=(--compile) SEARCH=device
TEST_ARGS=(tests/test_cuda.py tests/test_rollout_sync.py -k "not cpu")
WHEELS="$REPO/.gpu-wheels" LIMITS=(150 150 150)
while (($#)); do
    case $1 in
        --device) DEVICE=$2; shift ;;
        --data) DATA=$(realpath "$2"); shift ;;
        --run) RUN=$(realpath "$2"); shift ;;
        --out) OUT=$(realpath -m "$2"); shift ;;
        --steps) STEPS=$2; shift ;;
        --copies) COPIES=$2; shift ;;
        --repeats) REPEATS=$2; shift ;;
        --no-compile) COMPILE=() ;;
        --neighbor-search) SEARCH=$2; shift ;;
        --wheels) WHEELS=$(realpath -m "$2"); shift ;;
        --limits) LIMITS=($2); shift ;;
        --) shift; TEST_ARGS=("$@"); break ;;
        -h|--help) usage ;;
        *) echo "gpu_check: unknown argument $1" >&2; usage 2 ;;
    esac
    shift
done
[[ -n $DATA && -n $RUN ]] || { echo "gpu_check: --data and --run are required" >&2; exit 2; }
cd "$REPO" || exit 2
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
if [[ $DEVICE == cuda* ]] && ! "$PYTHON" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then
    echo "gpu_check: CUDA absent: --device $DEVICE needs a GPU (use --device cpu)" >&2
    exit 2
fi
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")

packages_present() {
    "$PYTHON" -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("vesin", "vesin_torch", "mdtraj", "pymetis", "ase")))'
}

if ! packages_present; then
    [[ -d $WHEELS ]] || { echo "gpu_check: packages missing and no wheels at $WHEELS" \
        "(run benchmarks/gpu_wheels.sh where there is network)" >&2; exit 2; }
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$WORK/site" "$WHEELS"/*.whl || exit 2
    export PYTHONPATH="$WORK/site:$PYTHONPATH"
fi

# phase NAME LIMIT COMMAND...: run COMMAND under LIMIT seconds into WORK/NAME.log; record
# its exit code and wall time in WORK/phases.tsv
phase() {
    local name=$1 limit=$2 start code
    shift 2
    echo "gpu_check: $name (at most ${limit}s) ..."
    start=$EPOCHREALTIME
    timeout --kill-after=30 "$limit" "$@" >"$WORK/$name.log" 2>&1
    code=$?
    awk -v n="$name" -v c="$code" -v s="$start" -v e="$EPOCHREALTIME" \
        'BEGIN { printf "%s\t%s\t%.3f\n", n, c, e - s }' >>"$WORK/phases.tsv"
    ((code == 0)) || { echo "gpu_check: $name exited $code; its log:"; tail -n 40 "$WORK/$name.log"; }
}

read -r -a copies <<<"$COPIES"
phase tests "${LIMITS[0]}" "$PYTHON" -m pytest -q -p no:cacheprovider \
    --junitxml "$WORK/tests.xml" "${TEST_ARGS[@]}"
phase benchmark "${LIMITS[1]}" "$PYTHON" benchmarks/learned_vs_lammps.py --data "$DATA" \
    --device "$DEVICE" --copies "${copies[@]}" --repeats "$REPEATS" "${COMPILE[@]}" \
    --baseline-config configs/polymer_baseline.yaml \
    --equivariant-config configs/polymer_equivariant.yaml \
    --dilation 1 --frame-interval 5 --out "$WORK/learned_vs_lammps.json"
phase rollout "${LIMITS[2]}" "$PYTHON" benchmarks/gpu_check.py rollout --run "$RUN" \
    --data "$DATA" --steps "$STEPS" --device "$DEVICE" --neighbor-search "$SEARCH" \
    --out "$WORK/rollout" --json "$WORK/rollout.json"
"$PYTHON" benchmarks/gpu_check.py report --work "$WORK" --out "$OUT" --device "$DEVICE" \
    || exit 2
echo "gpu_check: logs in $WORK"
! cut -f2 "$WORK/phases.tsv" | grep -qv '^0$'
