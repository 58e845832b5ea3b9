#!/usr/bin/env bash
# Debian/Ubuntu packages the build needs: a compiler toolchain and boost for KenLM's lmplz,
# apt's package lists (the sample world is built from Debian packages via apt-get download),
# Slurm with munge (tests/test_slurm.py runs the Slurm launcher on a one-node cluster),
# PostgreSQL (tests/test_production_instance.py runs deploy/dagster.yaml on a throwaway server),
# and Chromium (tests/test_web_ui.py drives the web UI in it with Playwright: no browser download).
set -euo pipefail
packages=(build-essential cmake libboost-program-options-dev libboost-system-dev
          libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev
          slurmd slurmctld slurm-client munge postgresql chromium)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
lists=$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' 2>/dev/null | head -1)
if [ ${#missing[@]} -gt 0 ] || [ -z "$lists" ]; then
  $sudo apt-get update -qq
fi
if [ ${#missing[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
