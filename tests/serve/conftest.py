"""A tiny trained result folder (synthetic data, pop + itemknn + bpr, two seeds) and helpers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from debiasrec.data.synthetic import SyntheticConfig, generate
from debiasrec.experiment.runner import ExperimentConfig, run_experiment

pytest.importorskip("fastapi")
pytest.importorskip("httpx")


@pytest.fixture(scope="session")
def result_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``debiasrec run`` output for 120 users x 60 items; user ids ``u0..``, item ids ``100..``."""
    data = tmp_path_factory.mktemp("serve_data")
    ds, _ = generate(SyntheticConfig(n_users=120, n_items=60, mean_interactions=15), rng=0)
    inter, users, items = ds.interactions_frame(), ds.users_frame(), ds.items_frame()
    inter["user_id"] = "u" + inter["user_id"].astype(str)
    users["user_id"] = "u" + users["user_id"].astype(str)
    inter["item_id"] = inter["item_id"] + 100
    items["item_id"] = items["item_id"] + 100
    items["genres"] = items["genres"].map("|".join)
    inter.to_csv(data / "inter.csv", index=False)
    users.to_csv(data / "users.csv", index=False)
    items.to_csv(data / "items.csv", index=False)
    cfg = ExperimentConfig.model_validate(
        {
            "name": "serve-test",
            "data": {
                "source": str(data / "inter.csv"),
                "users": str(data / "users.csv"),
                "items": str(data / "items.csv"),
                "sensitive": ["gender", "age"],
            },
            "models": [
                {"model": "pop"},
                {"model": "itemknn", "params": {"k": 20}},
                {"model": "bpr", "params": {"dim": 8, "train": {"epochs": 2}}},
            ],
            "eval": {"ks": [5], "n_boot": 10},
            "seeds": [0, 1],
        }
    )
    out = tmp_path_factory.mktemp("serve_result")
    run_experiment(cfg, out)
    return out


@pytest.fixture()
def make_service(result_dir: Path, tmp_path: Path) -> Callable[..., object]:
    """``make_service(model="itemknn", **serve_options)`` with a fresh store in tmp_path."""
    from debiasrec.serve import ServeConfig, Service

    made = []

    def make(**kw: object) -> Service:
        kw.setdefault("store", str(tmp_path / "feedback.sqlite"))
        kw.setdefault("model", "itemknn")
        svc = Service(result_dir, ServeConfig.model_validate(kw))
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.close()


@pytest.fixture()
def client(make_service):
    """TestClient over an itemknn service with default options."""
    from fastapi.testclient import TestClient

    from debiasrec.serve import create_app

    svc = make_service()
    with TestClient(create_app(svc)) as c:
        c.service = svc
        yield c
