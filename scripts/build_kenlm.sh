#!/usr/bin/env bash
# Builds KenLM's lmplz and build_binary into .venv/bin. pip's kenlm wheel only has the query
# module; the estimation programs come from the same sdist, compiled against Debian's boost.
set -euo pipefail
venv=${1:-.venv}
cache=${2:-.cache/kenlm}
if [ -x "$venv/bin/lmplz" ] && [ -x "$venv/bin/build_binary" ]; then
  exit 0
fi
mkdir -p "$cache"
if ! ls "$cache"/kenlm-*.tar.gz >/dev/null 2>&1; then
  "$venv/bin/pip" download --quiet --no-binary kenlm --no-deps --dest "$cache" kenlm
fi
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -xzf "$cache"/kenlm-*.tar.gz -C "$src" --strip-components=1
cmake -S "$src" -B "$src/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >/dev/null
cmake --build "$src/build" --target lmplz build_binary -j "$(nproc)" >/dev/null
install -m 0755 "$src/build/bin/lmplz" "$src/build/bin/build_binary" "$venv/bin/"
echo "kenlm: installed lmplz and build_binary into $venv/bin"
