"""Experiment configuration: TOML in, unknown keys rejected by path, resolved config out."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from debiasrec.cli import DEMO_CONFIG, QUICK_CONFIG
from debiasrec.config import dump_toml, load_toml, validate
from debiasrec.errors import ConfigError
from debiasrec.experiment.runner import ExperimentConfig, ModelSpec, load_config


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    cfg = ExperimentConfig()
    assert cfg.data.source == "ml-100k"
    assert [m.kind for m in cfg.models] == ["pop"] and cfg.seeds == [0]
    assert cfg.split.ratios == (0.8, 0.1, 0.1) and cfg.split.method == "random"
    assert cfg.eval.ks == [10, 20] and cfg.recs_k is None


def test_round_trip_fills_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'name = "x"\nseeds = [1, 2]\n[data]\nsource = "data.csv"\nsensitive = ["gender"]\n'
        "[data.purify]\nmin_user_interactions = 5\n[eval]\nks = [5]\n"
        '[[models]]\nmodel = "BPR"\nname = "bpr-small"\n'
        "params = { dim = 8, train = { epochs = 3, lr = 0.01 } }\n",
    )
    cfg = load_config(path)
    assert cfg.models[0].label == "bpr-small" and cfg.models[0].params.train.epochs == 3
    out = tmp_path / "resolved.toml"
    dump_toml(cfg, out)
    text = out.read_text()
    assert "ratios" in text and "n_boot = 1000" in text  # defaults written out
    assert "recs_k" not in text  # None values are left out (TOML has no null)
    assert load_config(out) == cfg


@pytest.mark.parametrize("path", [DEMO_CONFIG, QUICK_CONFIG], ids=["demo", "demo-quick"])
def test_shipped_configs_round_trip(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    dump_toml(cfg, tmp_path / "c.toml")
    assert load_config(tmp_path / "c.toml") == cfg
    assert cfg.data.sensitive and {"gender"} <= set(cfg.data.sensitive)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("evall = 1\n", ["evall: unknown key"]),
        ("[eval]\nkss = [5]\n", ["eval.kss: unknown key"]),
        ("[data.purify]\nduplicate = 'keep_first'\n", ["data.purify.duplicate: unknown key"]),
        (
            '[[models]]\nmodel = "pop"\n[[models]]\nmodel = "bpr"\nparams = { dimm = 3 }\n',
            ["models[1].params.dimm: unknown key"],
        ),
        (
            '[[models]]\nmodel = "bpr"\nparams = { train = { epochs = 0 } }\n',
            ["params.train.epochs"],
        ),
        ('[[models]]\nmodel = "nope"\n', ["unknown model 'nope'", "available", "lightgcn"]),
        ('[[models]]\nmodel = "pop"\n[[models]]\nmodel = "pop"\n', ["unique", "'pop'"]),
        ("seeds = []\n", ["seeds must list at least one seed"]),
        ("seeds = 'zero'\n", ["seeds"]),
        ("recs_k = 30\n", ["recs_k=30", "max(eval.ks)=20"]),
        ("recs_k = 0\n", ["recs_k"]),
        ("[eval]\nmetrics = ['ndcg', 'auc']\n", ["'auc'", "available"]),
        ("[eval]\nks = [0]\n", ["eval.ks"]),
        ("[split]\nratios = [0.8, 0.2]\n", ["split.ratios"]),
        ("seeds = [-1]\n", ["seeds[0] = -1 is not a valid seed", "2**63 - 1"]),
        ("seeds = [3, 3]\n", ["seeds must be distinct"]),
        ("[split]\nseed = -5\n", ["split.seed"]),
        ('[[models]]\nkind = "pop"\nname = "../../x"\n', ["models[0].name", "'../../x'"]),
        ('[[models]]\nkind = "pop"\nname = "/abs"\n', ["models[0].name"]),
    ],
    ids=[
        "top",
        "eval",
        "purify",
        "params",
        "trainer",
        "model",
        "dup",
        "no-seeds",
        "seed-type",
        "recs-k",
        "recs-k-zero",
        "metric",
        "ks",
        "ratios",
        "seed-negative",
        "seed-repeated",
        "split-seed",
        "name-traversal",
        "name-absolute",
    ],
)
def test_invalid_configs_name_the_field(text: str, needles: list[str], tmp_path: Path) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = str(info.value)
    assert str(path) in msg
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_all_errors_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "evall = 1\nseedz = [0]\n[eval]\nn_boot = -1\n")
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "evall" in msg and "seedz" in msg and "eval.n_boot" in msg


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[data]\nsource =\n")
    with pytest.raises(ConfigError, match=r"TOML syntax error.*line 2"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path)  # a folder is not a config file


def test_model_spec_checks_params_when_built() -> None:
    assert ModelSpec(model="itemknn").label == "itemknn"  # 'model' is the older name of 'kind'
    spec = ModelSpec(kind="itemknn", params={"k": 7})
    assert spec.label == "itemknn" and spec.params.k == 7  # the model's typed config
    with pytest.raises(ValueError, match="params.k"):
        ModelSpec(kind="itemknn", params={"k": "many"})


def test_validate_and_load_toml_for_any_model(tmp_path: Path) -> None:
    class Small(BaseModel):
        model_config = ConfigDict(extra="forbid")
        a: int
        b: list[str] = []

    assert validate(Small, {"a": 1}).a == 1
    with pytest.raises(ConfigError, match=r"(?s)invalid opts:.*  a: .*  c: unknown key"):
        validate(Small, {"a": "x", "c": 2}, source="opts")
    path = tmp_path / "s.toml"
    dump_toml(Small(a=3, b=["x"]), path)
    assert load_toml(path, Small) == Small(a=3, b=["x"])
