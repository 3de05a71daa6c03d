#!/usr/bin/env bash
# Keel's main job: sets up (system packages, the real model), builds the release binary, and runs the
# daemon on recipes/ with its state in var/ (docs/daemon.md).
#
#   scripts/main.sh            trains every recipe at the top of recipes/ not trained before, then exits
#   scripts/main.sh --watch    keeps watching recipes/ (stop with Ctrl-C / SIGTERM; runs resume next time)
#
# Other arguments go to `keel daemon` (e.g. --workers 2).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
swift build -c release
arguments=()
watch=0
for argument in "$@"; do
  if [[ "$argument" == "--watch" ]]; then watch=1; else arguments+=("$argument"); fi
done
if [[ $watch -eq 0 ]]; then arguments+=("--exit-when-idle"); fi
exec .build/release/keel daemon --recipes recipes --var var "${arguments[@]}"
