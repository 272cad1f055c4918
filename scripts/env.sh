# Sourced by the scripts: where installs and build outputs are kept.
# Compiled dependencies live under ~/.cache/murima (keyed by the compiler's version),
# shared by every clone on this machine, so a CI run in a fresh clone reuses what an
# earlier run built. Cargo may take another clone's build of Murima's own crates as fresh
# (their hashes do not depend on the checkout's path), so nothing built may depend on
# where the checkout is: migrations are embedded (runtime/build.rs). `target` in the
# repository is a link to it, so target/debug/<binary> works as written.
CACHE="${MURIMA_CACHE:-$HOME/.cache/murima}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target-rustc-$(rustc --version | cut -d' ' -f2)}"
mkdir -p "$CARGO_TARGET_DIR"
[ -e "$ROOT/target" ] || [ -L "$ROOT/target" ] || ln -s "$CARGO_TARGET_DIR" "$ROOT/target"
BIN="$CARGO_TARGET_DIR/debug"
