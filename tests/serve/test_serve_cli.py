"""``debiasrec serve``: bad folders exit 2 with one clear line; the runner saves first-seed models."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import pytest

from debiasrec.cli import main
from debiasrec.models import model_class
from debiasrec.serve import saved_models


def _run(*args):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, err.getvalue()


def test_serve_missing_folder(tmp_path) -> None:
    code, err = _run("serve", tmp_path / "nope")
    assert code == 2 and "is not a folder" in err and "Traceback" not in err


def test_serve_folder_without_models(tmp_path) -> None:
    (tmp_path / "config.toml").write_text('name = "x"\n')
    code, err = _run("serve", tmp_path)
    assert code == 2 and "no saved models" in err


def test_serve_unknown_model(result_dir) -> None:
    code, err = _run("serve", result_dir, "--model", "lightgcn")
    assert code == 2 and "no saved model 'lightgcn'" in err and "itemknn" in err


def test_runner_saves_first_seed_models(result_dir) -> None:
    assert saved_models(result_dir) == ["bpr", "itemknn", "pop"]
    for label in saved_models(result_dir):
        model = model_class(label).load(result_dir / "models" / label)
        assert model.n_items_ == 60


@pytest.mark.parametrize(
    ("value", "needle"),
    [("nan", "online.target"), ("inf", "online.target"), ("-0.1", "[0, 1]"), ("2", "[0, 1]")],
)
def test_serve_target_must_be_finite_and_in_range(result_dir, tmp_path, value, needle) -> None:
    code, err = _run(
        "serve", result_dir, "--model", "itemknn", "--store", tmp_path / "s.sqlite",
        "--target", value,
    )  # fmt: skip
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "s.sqlite").exists()  # refused before anything was opened


def test_serve_config_file_values_are_checked(result_dir, tmp_path) -> None:
    cfg = tmp_path / "serve.toml"
    cfg.write_text("[online]\ntarget = nan\n\n[privacy]\nepsilon = inf\n")
    code, err = _run("serve", result_dir, "--config", cfg)
    assert code == 2 and "online.target" in err and "privacy.epsilon" in err, err


def test_serve_api_key_env_must_be_set(result_dir, monkeypatch) -> None:
    monkeypatch.delenv("DEBIASREC_UNSET_KEY", raising=False)
    code, err = _run("serve", result_dir, "--api-key-env", "DEBIASREC_UNSET_KEY")
    assert code == 2 and "DEBIASREC_UNSET_KEY is not set" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def broken_copy(result_dir, tmp_path_factory):
    """A copy of the result folder whose itemknn model files each test may break."""
    out = tmp_path_factory.mktemp("broken") / "run"
    shutil.copytree(result_dir, out, ignore=shutil.ignore_patterns("feedback.sqlite*", "cache"))
    return out


def _bpr_state(result_dir):
    return (result_dir / "models" / "bpr" / "state.safetensors").read_bytes()


CORRUPT = {
    "invalid JSON": ("config.json", lambda good, rd: good[:40], "is not valid JSON (line"),
    "a JSON list": ("config.json", lambda good, rd: b"[1, 2]", "must hold a JSON object"),
    "missing field": (
        "config.json",
        lambda good, rd: json.dumps({k: v for k, v in json.loads(good).items() if k != "n_items"}),
        "field 'n_items' is missing",
    ),
    "wrong type": (
        "config.json",
        lambda good, rd: json.dumps({**json.loads(good), "n_users": "many"}),
        "field 'n_users' must be an integer",
    ),
    "bad model setting": (
        "config.json",
        lambda good, rd: json.dumps({**json.loads(good), "config": {"k": "x"}}),
        "invalid itemknn settings: config.k",
    ),
    "unknown model": (
        "config.json",
        lambda good, rd: json.dumps({**json.loads(good), "model": "nope"}),
        "field 'model': unknown model 'nope'",
    ),
    "truncated weights": (
        "state.safetensors",
        lambda good, rd: good[:100],
        "cannot be loaded as the saved 'itemknn' model",
    ),
    "weights of another model": (
        "state.safetensors",
        lambda good, rd: _bpr_state(rd),
        "state.safetensors",
    ),
    "missing weights": ("state.safetensors", None, "is missing: the saved model has no weights"),
}


@pytest.mark.parametrize("case", list(CORRUPT))
def test_serve_corrupt_model_folder_is_named(broken_copy, result_dir, tmp_path, case) -> None:
    name, make, needle = CORRUPT[case]
    path = broken_copy / "models" / "itemknn" / name
    good = (result_dir / "models" / "itemknn" / name).read_bytes()
    try:
        if make is None:
            path.unlink()
        else:
            data = make(good, result_dir)
            path.write_bytes(data if isinstance(data, bytes) else data.encode())
        code, err = _run(
            "serve", broken_copy, "--model", "itemknn", "--store", tmp_path / "s.sqlite"
        )
    finally:
        path.write_bytes(good)
    assert code == 2, err
    assert needle in err and str(path) in err and "Traceback" not in err, err
    assert err.count("\n") == 1  # one line
