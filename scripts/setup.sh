#!/usr/bin/env bash
# Installs the project into the current Python environment (use a virtual environment if you like).
#  - If torch is already importable (e.g. your own CUDA build), it is kept as it is.
#  - Otherwise the CPU build of torch is installed first (TORCH_SPEC, default torch==2.13.0; set
#    PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu where that index is reachable), so that the
#    plain torch requirement of the package does not pull a CUDA build of several GB.
#  - `--dev` adds the test dependencies.
#  - pip is told not to byte-compile what it installs (--no-compile): it would compile all of torch, scipy,
#    sympy, ... (about 13,000 files) while a run imports a fraction of them, which Python compiles and caches at
#    first import (faster set-up plus first import: the setup_time result in docs/benchmarks.md). Not where
#    PYTHONDONTWRITEBYTECODE is set: Python then caches nothing and every start would compile again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
extra=""
nocompile="--no-compile"
[ -n "${PYTHONDONTWRITEBYTECODE:-}" ] && nocompile=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
if "$PY" -c "import torch" 2>/dev/null; then
  echo "setup: keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "setup: no torch found, installing the CPU build (${TORCH_SPEC:-torch==2.13.0})"
  "$PY" -m pip install --disable-pip-version-check $nocompile -q "${TORCH_SPEC:-torch==2.13.0}"
fi
"$PY" -m pip install --disable-pip-version-check $nocompile -q -e ".${extra}"
"$PY" -c "import torch, monai, pipeline; print(f'setup: torch {torch.__version__}, monai {monai.__version__}, pipeline {pipeline.__version__}')"
