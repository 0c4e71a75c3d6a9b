#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) on stable Rust: libFuzzer through
# cargo-fuzz with sanitizers off (-s none), which needs no nightly compiler. New inputs go to
# target/fuzz/corpus/TARGET; the checked-in seeds stay untouched. A crash leaves its input in
# target/fuzz/artifacts/ and fails the run: copy it into fuzz/regressions/TARGET/ so that
# `cargo test` replays it (dns/tests/fuzz_inputs.rs).
#
#   fuzz/run.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(query zone_file snapshot transfer_in frame)

command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: cargo install --locked cargo-fuzz" >&2; exit 2; }
cargo fuzz build -s none --fuzz-dir fuzz
for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  artifacts=target/fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=target/fuzz/$target.log
  if ! cargo fuzz run -s none --fuzz-dir fuzz "$target" "$corpus" "fuzz/seeds/$target" "fuzz/regressions/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz target $target failed; inputs in $artifacts" >&2
    exit 1
  fi
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  echo "fuzz $target: $runs executions in ${seconds}s, $cov, no crash"
done
