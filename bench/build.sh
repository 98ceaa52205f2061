#!/usr/bin/env bash
# Times the build as a user meets it: a cold full build, a no-op rebuild, and a rebuild after
# one edit to one sheet. Run from the project root: bash bench/build.sh
# Uses farm-bench when it is on PATH (min/median/max over runs), else one timed run each.
set -euo pipefail
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
cp -r onepagers cards templates "$root"
cd "$root"

timeit() {  # label, command...
  local label=$1; shift
  if command -v farm-bench >/dev/null; then
    echo "== $label"; farm-bench -n 5 --timeout 600 -- "$@" | grep -E '^A = |wall|peak'
  else
    local start=$(date +%s.%N); "$@" >/dev/null 2>&1
    echo "$label: $(echo "$(date +%s.%N) - $start" | bc) s"
  fi
}

timeit "full build, empty cache" sh -c 'rm -rf build && exec mlgrind build'
mlgrind build >/dev/null 2>&1
timeit "no-op rebuild" mlgrind build
# Each run writes new text into one note of sheet 90, so every run renders that sheet's two PDFs
# (a text seen before would come from the cache).
timeit "rebuild after one sheet edit" sh -c \
  'sed -i "s/new shape[^\"]*\"/new shape, run $(date +%s%N).\"/" onepagers/90-numpy-shapes.yaml; exec mlgrind build'
