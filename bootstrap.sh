#!/usr/bin/env bash
# One-command install + run, for a fresh Linux machine (Debian/Ubuntu) or any machine with Python >= 3.11.
#   bash bootstrap.sh view [MODEL]   install, then open the viewer (default: the bundled model)
#   bash bootstrap.sh test [ARGS]    install (with test tools), then run the whole test suite
#   bash bootstrap.sh install        install only (system libraries, ./.venv with vbnf editable and the test tools)
# Installs into ./.venv. Set VBNF_TORCH to choose the torch wheel, e.g. a CUDA build:
#   VBNF_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" bash bootstrap.sh view
set -euo pipefail
cd "$(dirname "$0")"
mode="${1:-view}"; shift || true

# System libraries: GL/EGL (Mesa's llvmpipe renders where there is no GPU; the window tests use GLFW's Null
# platform with an EGL context, so no X server is needed).
apt_packages="libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri libglx-mesa0"
missing=""
for p in $apt_packages; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ] && command -v apt-get >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "bootstrap: installing system packages:$missing"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null; } \
    || echo "bootstrap: could not install$missing; the viewer and its tests need them (apt-get install$missing)"
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q ${VBNF_TORCH:-torch==2.13.0}
fi
extras=""; case "$mode" in test|install) extras="[test]" ;; esac
.venv/bin/python -m pip install -q -e ".$extras"

case "$mode" in
  view) exec .venv/bin/vbnf view "$@" ;;
  test) exec .venv/bin/python -m pytest -q "$@" ;;
  install) echo "bootstrap: installed into ./.venv" ;;
  *) echo "usage: bash bootstrap.sh view [MODEL] | test [PYTEST ARGS] | install" >&2; exit 2 ;;
esac
