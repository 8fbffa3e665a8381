"""The ``[[methods]]`` schema: every level parses, sweeps expand, mistakes name the exact field."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pre_helpers import registered

from debiasrec.errors import ConfigError
from debiasrec.experiment.runner import ExperimentConfig, load_config

MODELS_TOML = (
    '[[models]]\nmodel = "pop"\n\n'
    '[[models]]\nmodel = "itemknn"\n\n'
    '[[models]]\nmodel = "bpr"\nparams = { dim = 8, train = { epochs = 2 } }\n\n'
)


def _load(tmp_path: Path, methods: str) -> ExperimentConfig:
    path = tmp_path / "cfg.toml"
    path.write_text('name = "m"\n' + MODELS_TOML + methods, encoding="utf-8")
    return load_config(path)


@pytest.fixture(autouse=True)
def _transforms():
    with registered():
        yield


def test_every_level_parses_and_sweeps_expand(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[[methods]]\nname = "adv"\nmodel = "bpr"\n'
        'inproc = [{ strategy = "adversarial", attrs = ["gender"], sweep = [0.1, 1.0] }]\n'
        '[[methods]]\nname = "combo"\nmodel = "bpr"\n'
        'pre = [{ method = "test_drop", strength = 0.2 }]\n'
        'inproc = [{ strategy = "focf", attr = "gender", weight = 0.5 }]\n'
        'post = [{ method = "calibrated", strength = 0.5 },'
        ' { method = "exposure", sweep = [0.1, 0.4] },'
        ' { method = "group_fair", attr = "gender", label = "gf",'
        ' self_calibrate = { target = "gap_ndcg:gender <= 0.5x" } }]\n'
        '[[methods]]\nname = "knn-exp"\nmodel = "itemknn"\n'
        'post = [{ method = "exposure", strength = 0.3 }]\n',
    )
    variants = cfg.variants()
    assert [v.label for v in variants] == ["adv@0.1", "adv@1", "combo+none", "knn-exp"]
    ((kind, adv),) = variants[0].inproc
    assert kind == "adversarial" and adv.attrs == ["gender"] and adv.strength == 0.1
    assert variants[1].inproc[0][1].strength == 1.0
    combo = variants[2]
    ((kind, drop),) = combo.pre
    assert kind == "test_drop" and drop.strength == 0.2 and combo.report_plain
    assert [lab for lab, _ in combo.post] == [
        "combo+calibrated",
        "combo+exposure@0.1",
        "combo+exposure@0.4",
        "combo+gf",
    ]
    assert str(combo.post[3][1].entry.self_calibrate.target) == "gap_ndcg:gender <= 0.5x"
    assert combo.post[1][1].strength == 0.1
    knn = variants[3]
    assert not knn.report_plain and [lab for lab, _ in knn.post] == ["knn-exp"]


@pytest.mark.parametrize(
    ("methods", "needle"),
    [
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            'strength = 0.5 }]\n[[methods]]\nname = "b"\nmodel = "bpr"\n'
            'post = [{ method = "exposure", strength = 0.5 }]\n[[methods]]\nname = "c"\n'
            'model = "bpr"\npost = [{ method = "exposure", strength = 1.5 }]\n',
            "methods[2].post[0].strength: Input should be less than or equal to 1",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            "strenght = 0.5 }]\n",
            "methods[0].post[0].strenght: unknown key",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibratd", '
            "strength = 0.5 }]\n",
            "methods[0].post[0].method: unknown re-ranker 'calibratd'",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            "strength = 0.5, sweep = [0.1] }]\n",
            "methods[0].post[0]: give exactly one of strength, sweep or self_calibrate",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            "sweep = [0.1, 2.0] }]\n",
            "methods[0].post[0].sweep[1]: strength input should be less than or equal to 1",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            'self_calibrate = { target = "miscalibration <= 0.5x", tries = 3 } }]\n',
            "methods[0].post[0].self_calibrate.tries: unknown key",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            'self_calibrate = { target = "happiness >= 2" } }]\n',
            "methods[0].post[0].self_calibrate.target",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\n'
            'inproc = [{ strategy = "adversary", attrs = ["gender"] }]\n',
            "methods[0].inproc[0].strategy: unknown in-processing strategy 'adversary'",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\n'
            'inproc = [{ strategy = "adversarial", attrs = ["gender"], strength = -1 }]\n',
            "methods[0].inproc[0].strength: Input should be greater than or equal to 0",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\n'
            'inproc = [{ strategy = "focf", attr = "gender", kind = "fair" }]\n',
            "methods[0].inproc[0].kind: Input should be 'value'",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "itemknn"\n'
            'inproc = [{ strategy = "adversarial", attrs = ["gender"] }]\n',
            "methods[0].inproc[0]: strategy 'adversarial' needs a model with TrainedByTrainer, UserRepresentation; model 'itemknn'",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npre = [{ method = "test_identity", '
            "sweep = [0.1, 0.2] }]\n",
            "methods[0].pre[0].sweep: 'test_identity' has no strength to sweep",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npre = [{ method = "smote" }]\n',
            "methods[0].pre[0].method: unknown pre-processing transform 'smote'",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npre = [{ method = "test_drop", '
            "strength = 2.0 }]\n",
            "methods[0].pre[0].strength: Input should be less than or equal to 0.9",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bert"\npost = [{ method = "calibrated", '
            "strength = 0.5 }]\n",
            "methods[0].model: 'bert' is not the label of a [[models]] entry",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\n',
            "methods[0]: lists no pre, inproc or post debiasing",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\npre = [{ method = "test_drop", '
            'sweep = [0.1] }]\ninproc = [{ strategy = "focf", attr = "gender", sweep = [1.0, 2.0] }]\n',
            "methods[0]: at most one sweep in pre/inproc per method",
        ),
        (
            '[[methods]]\nname = "bpr"\nmodel = "bpr"\npost = [{ method = "calibrated", '
            "strength = 0.5 }]\n",
            "result label 'bpr' is used twice",
        ),
        (
            '[[methods]]\nname = "a"\nmodel = "bpr"\nmodle = "x"\n',
            "methods[0].modle: unknown key",
        ),
    ],
    ids=[
        "strength-range",
        "post-key",
        "post-method",
        "strength-and-sweep",
        "sweep-value",
        "selfcal-key",
        "selfcal-target",
        "inproc-name",
        "inproc-value",
        "focf-kind",
        "inproc-non-torch",
        "pre-sweep-no-strength",
        "pre-name",
        "pre-value",
        "base-model",
        "empty",
        "two-sweeps",
        "label-clash",
        "method-key",
    ],
)
def test_invalid_methods_name_the_field(tmp_path: Path, methods: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, methods)
    assert needle in str(info.value), str(info.value)


def test_all_method_errors_at_once(tmp_path: Path) -> None:
    msg = str(
        pytest.raises(
            ConfigError,
            _load,
            tmp_path,
            '[[methods]]\nname = "a"\nmodel = "bpr"\npost = [{ method = "calibrated", strength = 3 }]\n'
            '[[methods]]\nname = "b"\nmodel = "bpr"\npost = [{ method = "nope", strength = 0.1 }]\n',
        ).value
    )
    assert "methods[0].post[0].strength" in msg and "methods[1].post[0].method" in msg


def test_capabilities_are_checked_before_training(tmp_path: Path) -> None:
    models = '[[models]]\nkind = "text2tower"\n[[models]]\nkind = "multvae"\n'
    # TextTwoTower declares item representations: multi-task genre heads work with it.
    path = tmp_path / "ok.toml"
    path.write_text(
        models + '[[methods]]\nname = "mt"\nmodel = "text2tower"\n'
        'inproc = [{ kind = "multitask", tasks = [{ kind = "genre" }] }]\n'
    )
    assert [v.label for v in load_config(path).variants()] == ["mt"]
    bad = tmp_path / "bad.toml"
    bad.write_text(
        models
        # Mult-VAE has no item representations (genre heads) and no pairwise batches (FOCF);
        # TextTwoTower ignores interaction weights and trains pairwise only with loss = "bpr".
        + '[[methods]]\nname = "a"\nmodel = "multvae"\n'
        'inproc = [{ kind = "multitask", tasks = [{ kind = "genre" }] }, '
        '{ kind = "focf", attr = "gender" }]\n'
        '[[methods]]\nname = "b"\nmodel = "text2tower"\n'
        'pre = [{ kind = "group_reweight", attr = "gender" }]\n'
        'inproc = [{ kind = "utility_gap", attr = "gender" }]\n'
        '[[methods]]\nname = "c"\nmodel = "text2tower"\nparams = { loss = "bpr" }\n'
        'inproc = [{ kind = "utility_gap", attr = "gender" }]\n'
    )
    msg = str(pytest.raises(ConfigError, load_config, bad).value)
    assert "methods[0].inproc[0]: strategy 'multitask' needs a model with ItemRepresentation; model 'multvae'" in msg
    assert "methods[0].inproc[1]: strategy 'focf' needs a model with PairwiseTraining" in msg
    assert "methods[1].pre[0]: transform 'group_reweight' sets interaction weights" in msg
    assert "methods[1].inproc[0]: strategy 'utility_gap' needs a model with PairwiseTraining" in msg
    assert "methods[2]" not in msg  # with loss = "bpr" the pairing works


def test_cli_exits_2_with_one_message_before_training(tmp_path: Path, cli) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        'name = "m"\n' + MODELS_TOML + '[[methods]]\nname = "a"\nmodel = "bpr"\n'
        'post = [{ method = "calibrated", strength = 1.5 }]\n'
    )
    res = cli("run", path, "--out", tmp_path / "out")
    assert res.code == 2
    assert res.err.startswith("error: invalid ") and "Traceback" not in res.err
    assert "methods[0].post[0].strength" in res.err
    assert not (tmp_path / "out").exists()


def test_method_params_override_the_base_model(tmp_path: Path) -> None:
    cfg = _load(
        tmp_path,
        '[[methods]]\nname = "short"\nmodel = "bpr"\nparams = { train = { epochs = 1 } }\n'
        'inproc = [{ strategy = "focf", attr = "gender" }]\n',
    )
    (variant,) = cfg.variants()
    assert variant.params.dim == 8 and variant.params.train.epochs == 1  # merged, dim kept
    with pytest.raises(ConfigError, match=r"methods\[0\]\.params\.dimm: unknown key"):
        _load(
            tmp_path,
            '[[methods]]\nname = "a"\nmodel = "bpr"\nparams = { dimm = 3 }\n'
            'post = [{ method = "calibrated", strength = 0.5 }]\n',
        )
