"""Size bounds: memory estimates before allocating, seed range, list length vs catalogue."""

from __future__ import annotations

import numpy as np
import pytest

from debiasrec import limits
from debiasrec.errors import ConfigError
from debiasrec.limits import (
    SEED_MAX,
    available_memory,
    bootstrap_bytes,
    check_list_length,
    check_memory,
    check_seed,
    format_bytes,
    topk_bytes,
)


def test_meminfo_is_read(tmp_path) -> None:
    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       1000 kB\nMemFree:         10 kB\nMemAvailable:     512 kB\n")
    assert limits._meminfo_available(info) == 512 * 1024
    info.write_text("MemTotal: 1000 kB\n")  # no MemAvailable line (old kernels)
    assert limits._meminfo_available(info) is None
    assert limits._meminfo_available(tmp_path / "absent") is None


def test_available_memory_takes_the_smallest_bound(monkeypatch) -> None:
    monkeypatch.setattr(limits, "_meminfo_available", lambda: 8 * 2**30)
    monkeypatch.setattr(limits, "_cgroup_available", lambda: 2 * 2**30)
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    assert available_memory() == 2 * 2**30
    monkeypatch.setenv(limits.MEMORY_ENV, "1e9")
    assert available_memory() == 10**9
    monkeypatch.setenv(limits.MEMORY_ENV, "lots")
    with pytest.raises(ConfigError, match="DEBIASREC_MEMORY_LIMIT"):
        available_memory()


def test_available_memory_falls_back_to_sysconf(monkeypatch) -> None:
    monkeypatch.setattr(limits, "_meminfo_available", lambda: None)
    monkeypatch.setattr(limits, "_cgroup_available", lambda: None)
    monkeypatch.delenv(limits.MEMORY_ENV, raising=False)
    got = available_memory()
    assert got is None or got > 0


def test_check_memory_names_the_setting(monkeypatch) -> None:
    monkeypatch.setenv(limits.MEMORY_ENV, str(2**30))
    check_memory(0.5 * 2**30, setting="--k", what="lists")  # fits
    with pytest.raises(ConfigError) as info:
        check_memory(447 * 2**30, setting="--k", what="top-10 lists")
    msg = str(info.value)
    assert msg.startswith("--k: top-10 lists need about 447.0 GiB")
    assert "1.0 GiB is available" in msg and msg.endswith("lower --k")


def test_estimates() -> None:
    # 60 users x 1e9 items: int64 codes + float32 scores = 12 bytes per entry (the 447 GiB of
    # the report for the codes alone, plus the scores).
    assert topk_bytes(60, 10**9) == 60 * 10**9 * 12
    work = limits.BOOTSTRAP_WORKSPACE
    assert bootstrap_bytes(1000, 2, 10) == 3 * 8 * 1000 * 2 * 10 + work
    assert bootstrap_bytes(10, 0, 0) == 3 * 8 * 10 + work  # at least one group and one metric
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(447 * 2**30) == "447.0 GiB"
    assert format_bytes(5 * 2**40) == "5.0 TiB"


@pytest.mark.parametrize(("n", "n_boot"), [(300, 4000), (30, 60_000)])
def test_bootstrap_estimate_bounds_the_real_peak(n, n_boot) -> None:
    """The estimate is above what by_group allocates (numpy reports to tracemalloc), and not
    far above when the replicates dominate."""
    import tracemalloc

    from debiasrec.metrics.fairness import by_group

    rng = np.random.default_rng(0)
    values = {f"m{j}": rng.random(n) for j in range(6)}
    groups = {"g": np.array(list("abc") * (n // 3))}
    tracemalloc.start()
    by_group(values, groups, n_boot=n_boot, rng=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    estimate = bootstrap_bytes(n_boot, 3, 6)
    assert peak <= estimate
    assert estimate - limits.BOOTSTRAP_WORKSPACE <= 4 * peak


@pytest.mark.parametrize("seed", [0, 1, 2**32, SEED_MAX, 7.0])
def test_valid_seeds(seed) -> None:
    assert check_seed(seed, "seed") == int(seed)


@pytest.mark.parametrize("seed", [-1, SEED_MAX + 1, 2**64, 1.5, "3", True, None, float("nan")])
def test_invalid_seeds(seed) -> None:
    with pytest.raises(ConfigError, match=r"seeds\[0\] = .* is not a valid seed.*2\*\*63 - 1"):
        check_seed(seed, "seeds[0]")


def test_list_length_within_catalogue() -> None:
    check_list_length([5, 10], 10, setting="eval.ks")
    with pytest.raises(ConfigError) as info:
        check_list_length([5, 1_000_000_000], 40, setting="eval.ks", catalogue="items.csv")
    msg = str(info.value)
    assert "eval.ks" in msg and "1,000,000,000" in msg and "items.csv (40 items)" in msg
