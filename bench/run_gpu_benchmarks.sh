#!/bin/bash
# Runs the GPU tests and benchmarks on any machine with a CUDA GPU, stage by stage, from a checkout with vbnf's
# dependencies installed (bash bootstrap.sh install, with a CUDA build of torch: see README).
#
#   bash bench/run_gpu_benchmarks.sh                                    # the GPU tests only
#   STAGES="tests speed memory train render viewer" DATA=path/to/lego bash bench/run_gpu_benchmarks.sh
#   STAGES=probe CONFIGS=vq6 TAG=_b09 PROBE_ARGS="--logit-beta1 0.9" DATA=path/to/lego bash bench/run_gpu_benchmarks.sh
#
# Stages: tests (the GPU tests), alltests (the whole suite in one process, ~5 min on an H200: tests written for the
# CPU machine must pass where CUDA is present too, and state one test leaves behind shows only there), speed (bench/train_speed.py), memory (bench/train_memory.py), probe (a one-minute
# bench/train_quality.py run), train (the 75 s training benchmark), render (bench/render.py --quick), viewer
# (bench/viewer_frame.py), rd (bench/rate_distortion.py at BUDGETS, default 0.1,0.25,0.5,1 MB: ~3.5 min each on an
# H200), livetrain (bench/viewer_training.py, ~3 min). Results go to RESULTS_DIR (default /tmp/vbnf-results), models to MODELS_DIR (default
# /tmp/vbnf-models); copy the JSON/markdown you keep into docs/results/ and run bench/results_page.py.
# Settings: DATA (a Blender-format data set, default .data/lego), CONFIGS, SECONDS_PER_RUN, BATCH, MAX_LEVEL,
# MODEL (for render/viewer; default: the vq6 model the train stage wrote), VBNF_CACHE_DIR (compiled kernels; fill it
# ahead with bench/warm_kernel_cache.py), T_PROBE / T_TRAIN / T_ALLTESTS (stage time limits, s).
# VBNF_COMMIT: the commit under test, for the records, where the tree is a copy whose git state is another commit's.
# Optional: ARCHIVE=FILE.tgz packs RESULTS_DIR into FILE after every stage (a run cut short keeps what finished);
# a folder .whl of wheels is installed first when the Python lacks the GL/GUI packages; a folder headless-gl of EGL
# libraries is put on LD_LIBRARY_PATH (library links stored as small text files naming their targets are rebuilt).
cd "$(dirname "$0")/.." || exit 1
R=${RESULTS_DIR:-/tmp/vbnf-results}
M=${MODELS_DIR:-/tmp/vbnf-models}
mkdir -p "$R" "$M"
pack() { [ -n "$ARCHIVE" ] && tar czf "$ARCHIVE" -C "$R" . 2>/dev/null; return 0; }
stage() { echo "=== $1 $(date +%T)"; }
DATA=${DATA:-.data/lego}
export PYTHONPATH=$PWD VBNF_CACHE_DIR=${VBNF_CACHE_DIR:-$PWD/.kcache}

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
if [ -d headless-gl ]; then
  mkdir -p /tmp/hgl
  for f in headless-gl/lib*; do
    b=$(basename "$f")
    if [ "$(stat -c%s "$f")" -lt 100 ]; then ln -sf "$(cat "$f")" "/tmp/hgl/$b"; else cp "$f" "/tmp/hgl/$b"; fi
  done
  export LD_LIBRARY_PATH=/tmp/hgl:$LD_LIBRARY_PATH
  f=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json; [ -f $f ] && export __EGL_VENDOR_LIBRARY_FILENAMES=$f
fi

for s in ${STAGES:-tests}; do
  stage "$s"
  case $s in
  tests)  timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_grid_features.py tests/test_march_rays.py \
            tests/test_viewer_gpu.py tests/test_viewer_gpu_training.py tests/test_optim.py tests/test_gl_ext.py \
            tests/test_render_policy.py tests/test_compositing.py 2>&1 | tail -5 ;;
  alltests) timeout "${T_ALLTESTS:-600}" python3 -m pytest -q -p no:cacheprovider tests/ 2>&1 \
            | grep -E "^(FAILED|ERROR)|passed|failed" ;;
  speed)  timeout 200 python3 bench/train_speed.py "$DATA" --json "$R/train_speed.json" 2>&1 | grep -v "^|" ;;
  memory) timeout 200 python3 bench/train_memory.py "$DATA" --configs dense,vq6,vq8 --logit-beta1 0.9,0 \
            --json "$R/train_memory.json" 2>&1 | grep -v "^{" ;;
  probe)  timeout "${T_PROBE:-120}" python3 bench/train_quality.py "$DATA" --configs "${CONFIGS:-dense,vq6}" \
            --seconds 60 --batch 16384 --max-level 8 --eval-lods 6 --eval-images 25 --out-dir "$M" \
            --json "$R/probe${TAG}.json" --tag "${TAG}" ${PROBE_ARGS} 2>&1 | grep -Ev " step [0-9]+/|^\||^$" ;;
  train)  timeout "${T_TRAIN:-500}" python3 bench/train_quality.py "$DATA" --configs "${CONFIGS:-dense,vq6}" \
            --seconds "${SECONDS_PER_RUN:-75}" --batch "${BATCH:-16384}" --max-level "${MAX_LEVEL:-8}" \
            --json "$R/train_quality.json" --out-dir "$M" 2>&1 | grep -Ev " step [0-9]+/" ;;
  render) timeout 120 python3 bench/render.py --model "${MODEL:-$M/vq6.vbnf}" --quick --frames 20 \
            --json "$R/render.json" --md "$R/render.md" 2>&1 | grep -E "cuda|torch|interop" ;;
  viewer) timeout 60 python3 bench/viewer_frame.py "${MODEL:-$M/vq6.vbnf}" --frames 100 \
            --out "$R/viewer.md" 2>&1 | grep "^|" ;;
  rd)     timeout "${T_RD:-1000}" python3 bench/rate_distortion.py "$DATA" --budgets "${BUDGETS:-0.1,0.25,0.5,1}" \
            --json "$R/rate_distortion.json" --plot "" --out-dir "$M" 2>&1 | grep -E "MB:|recipe:|rror" ;;
  livetrain) timeout 400 python3 bench/viewer_training.py --data "$DATA" --size 800 --seconds 20 \
            --baseline-seconds 30 --out "$R/viewer_training.json" 2>&1 | tail -20 ;;
  *) echo "unknown stage $s (tests alltests speed memory probe train render viewer rd livetrain)" ;;
  esac
  pack
done
stage done
