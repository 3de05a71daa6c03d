#!/usr/bin/env bash
# Sets up (system packages and the real model) and runs every test, in release mode with testability,
# because the parity tests run the real 135M-parameter model and debug Swift is 10–50× slower.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release 2>&1 | tee /dev/stderr | grep -E '^(Sources|Plugins)/.*warning:' \
  && { echo "test: release build has warnings in project code" >&2; exit 1; }
swift test -c release -Xswiftc -enable-testing "$@"
