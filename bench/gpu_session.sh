#!/bin/bash
# One call on the GPU machine (the device tool): run the stages named in STAGES, write results under $OUT/r.tgz
# (re-packed after every stage, so a call cut short still returns what finished) and logs on stdout.
#
#   STAGES="tests speed memory train render viewer" bash bench/gpu_session.sh
#   STAGES=probe CONFIGS=vq6 TAG=_b09 PROBE_ARGS="--logit-beta1 0.9" DATA=.data/lego25 bash bench/gpu_session.sh
#
# Carry (ignored folders of the checkout): .whl (moderngl, glcontext, glfw, imgui-bundle wheels for Python 3.12),
# headless-gl (cp -a ../shared/headless-gl), .data/lego (train + test splits), and optionally a kernel cache
# (VBNF_CACHE_DIR, filled by bench/warm_kernel_cache.py). Knobs: CONFIGS, SECONDS_PER_RUN, BATCH, MAX_LEVEL, DATA,
# MODEL (for render/viewer; default: the vq6 model the train stage wrote).
cd "$(dirname "$0")/.." || exit 1
R=/tmp/results; mkdir -p $R /tmp/models
pack() { tar czf "$OUT/r.tgz" -C $R . 2>/dev/null; }
stage() { echo "=== $1 $(date +%T)"; }
DATA=${DATA:-.data/lego}
export PYTHONPATH=$PWD VBNF_CACHE_DIR=${VBNF_CACHE_DIR:-$PWD/.kcache}

if [ -d .whl ]; then  # GL + GUI packages the machine lacks
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PWD
fi
if [ -d headless-gl ]; then  # its symbolic links arrive as small text files naming their targets: rebuild them
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
            tests/test_viewer_gpu.py tests/test_optim.py tests/test_gl_ext.py 2>&1 | tail -5 ;;
  speed)  timeout 200 python3 bench/train_speed.py "$DATA" --json $R/train_speed.json 2>&1 | grep -v "^|" ;;
  memory) timeout 200 python3 bench/train_memory.py "$DATA" --configs dense,vq6,vq8 --logit-beta1 0.9,0 \
            --json $R/train_memory.json 2>&1 | grep -v "^{" ;;
  probe)  timeout ${T_PROBE:-120} python3 bench/train_quality.py "$DATA" --configs "${CONFIGS:-dense,vq6}" --seconds 60 \
            --batch 16384 --max-level 8 --eval-lods 6 --eval-images 25 --out-dir /tmp/models \
            --json $R/probe${TAG}.json --tag "${TAG}" ${PROBE_ARGS} 2>&1 | grep -Ev " step [0-9]+/|^\||^$" ;;
  train)  timeout ${T_TRAIN:-500} python3 bench/train_quality.py "$DATA" --configs "${CONFIGS:-dense,vq6}" \
            --seconds "${SECONDS_PER_RUN:-75}" --batch "${BATCH:-16384}" --max-level "${MAX_LEVEL:-8}" \
            --json $R/train_quality.json --out-dir /tmp/models 2>&1 | grep -Ev " step [0-9]+/" ;;
  render) timeout 120 python3 bench/render.py --model "${MODEL:-/tmp/models/vq6.vbnf}" --quick --frames 20 \
            --json $R/render.json --md $R/render.md 2>&1 | grep -E "cuda|torch|interop" ;;
  viewer) timeout 60 python3 bench/viewer_frame.py "${MODEL:-/tmp/models/vq6.vbnf}" --frames 100 \
            --out $R/viewer.md 2>&1 | grep "^|" ;;
  esac
  pack
done
stage done
