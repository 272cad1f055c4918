#!/usr/bin/env bash
# A grep-level check that request paths cannot panic on input (issue 16): outside test
# modules, the crates that handle requests (events, runtime, command-api, query-api) hold
# no `.unwrap()`, `.expect(`, `panic!`, `unreachable!`, `todo!` or `unimplemented!`.
# A line that must keep one says why with `// panic-free:` on it or just above it. (Clippy's
# unwrap_used/expect_used say the same when it runs; this needs no extra build.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 - "$@" <<'PY'
import pathlib, re, sys
pattern = re.compile(r"\.unwrap\(\)|\.expect\(|\bpanic!\(|\bunreachable!\(|\btodo!\(|\bunimplemented!\(")
found = []
for crate in ["events/src", "runtime/src", "command-api/src", "query-api/src"]:
    for path in sorted(pathlib.Path(crate).rglob("*.rs")):
        previous = ""
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip() == "#[cfg(test)]":
                break  # test modules close every file
            code = line.split("//", 1)[0]
            if pattern.search(code) and "panic-free:" not in line and "panic-free:" not in previous:
                found.append(f"{path}:{number}: {line.strip()}")
            previous = line
if found:
    print("request paths must not panic; return an error instead (or mark the line `// panic-free: why`):")
    print("\n".join(found))
    sys.exit(1)
print("lint: no panicking call on request paths")
PY
