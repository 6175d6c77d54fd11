#!/usr/bin/env bash
# The installed product, not the checkout: builds the wheel, installs it (not editable) into a fresh virtual
# environment, and from a folder outside the checkout runs `vbnf info` on the bundled model and a headless viewer
# screenshot of it. Needs the system GL libraries that `bash bootstrap.sh install` sets up.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$python" -m venv "$work/venv"
py="$work/venv/bin/python"
"$py" -m pip wheel -q --no-deps -w "$work/dist" .
rm -rf build  # pip builds in the tree; keep the checkout as it was
# shellcheck disable=SC2086
"$py" -m pip install -q ${VBNF_TORCH:-torch==2.13.0}
"$py" -m pip install -q "$work"/dist/vbnf-*.whl

mkdir "$work/outside"
cd "$work/outside"
"$work/venv/bin/vbnf" info > info.txt
if ! grep -q "site-packages/engine/assets/default.vbnf: vbnf format" info.txt; then
  echo "check_wheel: vbnf info did not describe the bundled model inside the installed package:" >&2
  cat info.txt >&2
  exit 1
fi
"$work/venv/bin/vbnf" view --headless --screenshot --size 160x120 --output-dir shots
shots=(shots/*.png)
if [ ! -s "${shots[0]}" ]; then
  echo "check_wheel: vbnf view --headless --screenshot wrote no PNG" >&2
  exit 1
fi
echo "check_wheel: the wheel installs, finds its bundled model and shaders, and renders ${shots[0]}"
