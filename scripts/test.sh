#!/usr/bin/env bash
# Sets up (system packages and the real model) and runs every test, in release mode with testability,
# because the parity tests run the real 135M-parameter model and debug Swift is 10–50× slower.
# Extra arguments go to `swift test` (e.g. --filter PhiloxTests).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
mkdir -p var/logs
# Headless Chromium draws the HTML report and the dashboard (RunReportEndToEndTests, DashboardTests);
# without it those parts are skipped with a message.
if ! command -v chromium >/dev/null; then
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  if ! { "${sudo_cmd[@]}" apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq chromium; } \
       >var/logs/chromium-install.log 2>&1; then
    echo "test: could not install chromium (offline?); the report will not be drawn by a browser (var/logs/chromium-install.log)" >&2
  fi
fi
# TensorBoard's own reader checks the event files keel writes (TensorBoardEventTests); offline, that
# part of the test is skipped with a message.
if ! var/venv/bin/python3 -c 'import tensorboard' 2>/dev/null; then
  if ! { python3 -m venv var/venv && var/venv/bin/pip install -q 'tensorboard==2.21.0'; } >var/logs/tensorboard-install.log 2>&1; then
    echo "test: could not install tensorboard into var/venv (offline?); event files will not be read back with TensorBoard (var/logs/tensorboard-install.log)" >&2
  fi
fi
# One release build with testability serves the warning check, the tests, and the `keel` binary that
# the end-to-end tests run (.build/release/keel).
if ! swift build -c release -Xswiftc -enable-testing --build-tests >var/logs/build.log 2>&1; then
  cat var/logs/build.log; echo "test: release build failed" >&2; exit 1
fi
if grep -E "^$PWD/(Sources|Plugins)/.*warning:" var/logs/build.log; then
  echo "test: the release build has warnings in project code (above)" >&2; exit 1
fi
swift test -c release -Xswiftc -enable-testing --skip-build "$@"
