#!/usr/bin/env bash
# Install debiasrec for development into the active Python environment (a virtualenv is best).
# torch is pinned by constraints.txt to the CPU build; ML-100K comes from the recbole wheel,
# installed without its dependencies (only its data files are read, the package is never imported).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[dev]"
python -m pip install -q -c constraints.txt --no-deps "recbole==1.2.1"
python -c "import debiasrec, torch; print('debiasrec', debiasrec.__version__, 'torch', torch.__version__)"
