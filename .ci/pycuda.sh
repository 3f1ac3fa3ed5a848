#!/usr/bin/env bash
# Builds pycuda, which irkit supports as a GPU launcher, for the CI's tests: pycuda is a
# source build against a CUDA toolkit's headers (no wheel on PyPI), so it cannot be in the
# README's `.[test]` extra. Prints a directory to put on PYTHONPATH (pycuda and what
# pycuda.gpuarray imports, none of which the README's install brings, so pip sees the venv as
# it is), or nothing where no toolkit is found.
# Built once per pycuda and Python version, then kept in ~/.cache/irkit-ci (about 1 minute
# on 2 cores; the tests run it against their fake libcuda.so.1, as they do the other launchers).
set -euo pipefail
version=2026.1

cuda_root=""
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" /usr/local/cuda /usr/local/cuda-*; do
  if [ -n "$root" ] && [ -f "$root/include/cuda.h" ]; then cuda_root=$root; break; fi
done
[ -n "$cuda_root" ] || exit 0

python=${PYTHON:-python3}
tag=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
# keyed by this script too: a change to what it installs builds afresh
key=$(cksum < "$0" | cut -d' ' -f1)
site="${XDG_CACHE_HOME:-$HOME/.cache}/irkit-ci/pycuda-$version-$tag-$key"
if [ -f "$site/.complete" ]; then echo "$site"; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
{
  "$python" -m venv "$work/venv"
  pip="$work/venv/bin/pip"
  "$pip" install -q numpy setuptools wheel
  "$pip" download -q --no-deps --no-binary pycuda --no-build-isolation -d "$work" "pycuda==$version"
  tar -xzf "$work/pycuda-$version.tar.gz" -C "$work"
  # what links against libcuda: a stand-in with the driver's soname (the toolkit's lib64/stubs
  # may be missing) and one of the functions pycuda calls, so that the linker keeps it as a
  # dependency; the real driver, or the tests' fake, is found at import
  mkdir "$work/stub"
  echo "int cuInit(unsigned flags) { return 999; }" > "$work/stub/stub.c"
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$work/stub/libcuda.so" "$work/stub/stub.c"
  cd "$work/pycuda-$version"
  PATH="$cuda_root/bin:$PATH" "$work/venv/bin/python" configure.py --cuda-root="$cuda_root" \
    --no-cuda-enable-curand --cudadrv-lib-dir="$work/stub" >/dev/null
  PATH="$cuda_root/bin:$PATH" "$pip" wheel -q --no-deps --no-build-isolation -w "$work/wheel" .
  rm -rf "$site"
  # pytools and its own for pycuda.gpuarray; numpy, typing-extensions come with the venv
  "$pip" install -q --no-deps --target "$site" "$work"/wheel/pycuda-*.whl pytools platformdirs siphash24
  touch "$site/.complete"
} >&2
echo "$site"
