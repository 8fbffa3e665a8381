"""``debiasrec serve``: bad folders exit 2 with one clear line; the runner saves first-seed models."""

from __future__ import annotations

import contextlib
import io

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
