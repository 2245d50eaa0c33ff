#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.c) with clang, ASan and UBSan
# into build-fuzz/ and runs each for SECONDS (default 10) on a copy of its seed
# corpus (tests/fuzz/corpus/NAME), so new inputs never land in the repository.
#   tests/fuzz/run.sh 10     a smoke run (make test runs this through ctest)
#   tests/fuzz/run.sh 600    a long run (make fuzz)
# Exit 77 (skipped) without clang; non-zero when a target crashes.
set -euo pipefail
SECONDS_EACH="${1:-10}"
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BUILD="${FEDERATE_FUZZ_BUILD:-$ROOT/build-fuzz}"
command -v clang >/dev/null || { echo "clang missing: fuzzing skipped"; exit 77; }
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang cmake -S "$ROOT" -B "$BUILD" -DFEDERATE_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFEDERATE_NATIVE=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
status=0
for bin in "$BUILD"/fuzz_*; do
  [ -x "$bin" ] || continue
  name="$(basename "$bin")"
  corpus="$ROOT/tests/fuzz/corpus/${name#fuzz_}"
  mkdir -p "$work/$name"
  [ -d "$corpus" ] && find "$corpus" -maxdepth 1 -type f -exec cp {} "$work/$name/" \;
  echo "fuzz: $name for ${SECONDS_EACH}s"
  if ! (cd "$work" && "$bin" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -print_final_stats=0 \
        "$work/$name" > "$work/$name.log" 2>&1); then
    echo "fuzz: $name FAILED"; tail -40 "$work/$name.log"; status=1
  fi
done
exit $status
