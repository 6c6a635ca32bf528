#!/usr/bin/env bash
# The whole test suite on a fresh Debian 12 machine, as root: installs what
# is needed, builds, runs every test (unit, namespace-isolated firewall and
# capture tests, integration, Ansible), then the fleet scenarios (tests/fleet:
# a controller, three bastions and clients in namespaces), checks that they
# left nothing behind (tests/leftovers.sh), then runs each fuzz target for a
# bounded time.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
# The Debian root of the package test, downloaded (once per machine) while
# the build runs; the test waits for it if it is not done.
bash tests/deploy/debian_root.sh >build-debian-root.log 2>&1 &
./deploy/build.sh

# Tests create and remove their own network namespaces; nothing touches the
# host's firewall. Two tests per core in one run: the long ones (Ansible
# rollouts, fleet scenarios; their COST starts them first) mostly wait on
# their daemons and timers, and the unit tests fill the gaps. Each fleet bed
# copies the fleet rendered once (fleet_render).
status=0
tests/leftovers.sh snapshot build/leftovers
ctest --test-dir build --output-on-failure -j"$((2 * $(nproc)))" --timeout 900 || status=1
tests/leftovers.sh check build/leftovers || status=1
[ "$status" -eq 0 ] || { echo "tests failed" >&2; exit 1; }

# Fuzzing, bounded: SESAME_FUZZ_SECONDS per target (0 skips).
fuzz_seconds=${SESAME_FUZZ_SECONDS:-30}
if [ "$fuzz_seconds" -gt 0 ] && command -v clang++ >/dev/null; then
  CC=clang CXX=clang++ cmake -S . -B build-fuzz -DSESAME_BUILD_FUZZ=ON -DSESAME_BUILD_TESTS=OFF \
    -DSESAME_BUILD_BENCH=OFF >build-fuzz.configure.log 2>&1 || { cat build-fuzz.configure.log; exit 1; }
  targets=()
  for f in fuzz/*_fuzz.cc; do targets+=("$(basename "$f" .cc)"); done
  cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}"
  # The targets fuzz side by side, one per core; each prints its summary when done.
  fuzz_dir=$(mktemp -d)
  trap 'rm -rf "$fuzz_dir"' EXIT
  for name in "${targets[@]}"; do
    corpus=fuzz/corpus/${name%_fuzz}
    mkdir -p "$fuzz_dir/$name"
    [ -d "$corpus" ] && cp -r "$corpus"/. "$fuzz_dir/$name"/
    echo "fuzzing $name for ${fuzz_seconds}s"
    "build-fuzz/fuzz/$name" -max_total_time="$fuzz_seconds" -print_final_stats=1 "$fuzz_dir/$name" \
      >"$fuzz_dir/$name.log" 2>&1 &
  done
  fuzz_status=0
  for job in $(jobs -p); do wait "$job" || fuzz_status=1; done
  for name in "${targets[@]}"; do echo "== $name"; tail -n 12 "$fuzz_dir/$name.log"; done
  [ "$fuzz_status" -eq 0 ] || { echo "fuzzing found a crash" >&2; exit 1; }
fi
