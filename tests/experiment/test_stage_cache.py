"""The content-addressed stage cache: keys, atomic entries, values that cannot be stored."""

from __future__ import annotations

import pytest

from debiasrec.experiment.cache import StageCache, stage_key


def test_keys_depend_on_every_input(monkeypatch) -> None:
    base = stage_key("fit", {"a": 1, "b": [1, 2]})
    assert base == stage_key("fit", {"b": [1, 2], "a": 1})  # key order does not matter
    assert base != stage_key("fit", {"a": 2, "b": [1, 2]})
    assert base != stage_key("eval", {"a": 1, "b": [1, 2]})
    monkeypatch.setattr("debiasrec.experiment.cache.__version__", "9.9.9")
    assert base != stage_key("fit", {"a": 1, "b": [1, 2]})  # the library version is in the key


def test_compute_once_then_load(tmp_path) -> None:
    cache = StageCache(tmp_path)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return 41

    def save(v: int, folder) -> bool:
        (folder / "v.txt").write_text(str(v))
        return True

    def load(folder) -> int:
        return int((folder / "v.txt").read_text())

    key = stage_key("x", {"n": 1})
    assert cache.get_or_compute("x", "lab", key, compute, save, load) == 41
    assert cache.get_or_compute("x", "lab", key, compute, save, load) == 41
    assert calls == [1]
    assert [r.status for r in cache.log.records] == ["computed", "cached"]
    assert cache.log.totals() == {"x": {"computed": 1, "cached": 1}}
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == [key]  # no temporary left


def test_failed_or_unstorable_entries_leave_nothing(tmp_path) -> None:
    cache = StageCache(tmp_path)
    key = stage_key("x", {})
    value = cache.get_or_compute("x", "lab", key, lambda: 3, lambda v, f: False, lambda f: 0)
    assert value == 3 and cache.log.records[-1].status == "computed (not cacheable)"
    assert cache.folder("x", key) is None

    def broken(v: int, folder) -> bool:
        (folder / "part").write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        cache.get_or_compute("x", "lab", key, lambda: 3, broken, lambda f: 0)
    assert cache.folder("x", key) is None
    assert list((tmp_path / "x").iterdir()) == []


def test_no_root_caches_nothing() -> None:
    cache = StageCache(None)
    calls: list[int] = []
    for _ in range(2):
        cache.get_or_compute(
            "x", "lab", "k", lambda: calls.append(1), lambda v, f: True, lambda f: None
        )
    assert len(calls) == 2 and cache.log.count("x") == 2


def test_keys_change_with_the_code(monkeypatch) -> None:
    """No hand-bumped version: a change to debiasrec's source changes every key."""
    from debiasrec.experiment import cache as cache_mod

    base = stage_key("fit", {"a": 1})
    assert len(cache_mod.code_hash()) == 16
    monkeypatch.setattr(cache_mod, "code_hash", lambda: "0" * 16)
    assert stage_key("fit", {"a": 1}) != base
