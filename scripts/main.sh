#!/usr/bin/env bash
# Sets up and runs Keel's main job.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
.build/release/keel --version
