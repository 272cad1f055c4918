#!/usr/bin/env bash
# The test command: installs and starts the local stack (idempotent, cached), then
# builds once (dev profile, shared with scripts/run.sh) and runs every test against it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
. scripts/env.sh

scripts/lint.sh
scripts/import-cycles.py
scripts/stack.sh start

# Each test makes its own databases; drop those of earlier runs on this machine.
scripts/stack.sh prune

# The crash tests run the service binaries as processes (to SIGKILL them): build them
# first, with the same profile as the tests.
cargo build --workspace --bins --locked
# No arithmetic on request paths can overflow or panic: clippy's arithmetic_side_effects
# over the crates that handle requests (scripts/lint.sh covers unwrap/expect/panic!).
if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked -p murima-events -p murima-runtime -p murima-command-api -p murima-query-api --lib \
    -- -A clippy::all -D clippy::arithmetic_side_effects
else
  echo "[test] cargo clippy is not installed here: the arithmetic check is skipped" >&2
fi
# Schema-driven fuzzing of both APIs against those binaries (bounded; scripts/fuzz.sh).
# MURIMA_FUZZ=off skips it, e.g. when running a few tests by name.
if [ "${MURIMA_FUZZ:-on}" != off ]; then scripts/fuzz.sh; fi
cargo test --workspace --locked "$@"
