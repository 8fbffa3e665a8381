"""Simulated feedback loop on ML-100K: exposure and utility of under-served groups with and
without online self-calibration.

Each round, every user asks the service (in process: :class:`debiasrec.serve.Service`, the same
code the HTTP endpoints call) for a top-10 list; the user-choice model clicks the item at rank
``r`` if it is in the user's held-out test items (their revealed preference) and the user
examines that rank, with probability ``1 / log2(r + 1)`` (position bias). Impressions and clicks
go back through ``Service.feedback`` (stored, monitored, fed to the online controller); clicked
items are masked from later lists. Arms:

- ``none``: the raw model;
- ``exposure static``: FA*IR exposure re-ranking at a fixed strength;
- ``exposure online``: the online controller steers the exposure strength so that the
  position-weighted long-tail share of impressions (the under-served item group) reaches a target;
- ``group_fair online``: the controller steers the group-fair re-ranker on the gender CTR gap,
  either from raw events (fairness monitor privacy off) or, as served by default, from the
  monitor's differentially private releases.

Every arm except the raw-events one runs the private monitor with one release per 1,000
events, each user's first 20 events per budget period counted, and a budget period of 10
releases (about one round, so each round costs epsilon = 1: after 8 rounds 8 in total); the
noise seed is ``--seed`` (production draws it from the OS). The second table compares the
monitor's published per-gender CTR with the simulated truth.

    python benchmarks/serve_feedback_loop.py [--rounds 8] [--write]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _results import write_section  # noqa: E402
from serve_common import ml100k_folder  # noqa: E402

from debiasrec.serve import ServeConfig, Service  # noqa: E402
from debiasrec.serve.monitor import position_weight  # noqa: E402

K = 10
CHUNK = 50  # users per request burst (~500 impressions)
LT_TARGET = 0.25
PRIVACY = {"release_every": 1000, "period_releases": 10, "max_events_per_user": 20}


def arms() -> dict[str, dict]:
    off = {"enabled": False}
    gf = {
        "post": "group_fair",
        "kind": "utility_gap",
        "target": 0.0,
        "attr": "gender",
        "update_every": 500,
        "gain": 5.0,
        "max_delta": 0.05,
        "min_events": 100.0,
    }
    return {
        "none": {"default_post": "none", "online": off},
        "exposure static (0.5)": {
            "default_post": "exposure",
            "strengths": {"exposure": 0.5},
            "online": off,
        },
        f"exposure online (LT share >= {LT_TARGET})": {
            "default_post": "exposure",
            "online": {
                "post": "exposure",
                "kind": "exposure_share",
                "target": LT_TARGET,
                "update_every": 500,
                "gain": 1.0,
                "max_delta": 0.05,
            },
        },
        "group_fair online (CTR gap <= 0), raw events": {
            "default_post": "group_fair",
            "online": gf,
            "privacy": {"mechanism": "off"},
        },
        "group_fair online (CTR gap <= 0), private releases": {
            "default_post": "group_fair",
            "online": gf,
        },
    }


def simulate(svc: Service, rounds: int, seed: int) -> dict:
    p = svc.pipeline
    rng = np.random.default_rng(seed)
    truth = p.split.test.csr().toarray() > 0
    gender = p.dataset.user_groups("gender")
    gcodes = np.asarray(gender.codes)
    users = np.arange(p.n_users)
    w = position_weight(np.arange(1, K + 1))
    per_round = []
    post = svc.config.default_post
    for _ in range(rounds):
        strengths, rows = [], []
        for a in range(0, len(users), CHUNK):  # requests arrive in bursts; the loop reacts
            chunk = users[a : a + CHUNK]
            strength = svc.strength(post)
            strengths.append(strength)
            items = p.recommend_codes(chunk, K, post, strength).items
            shown = items >= 0
            rel = truth[chunk[:, None], np.where(shown, items, 0)] & shown
            click = rel & (rng.random(items.shape) < w[None, :])
            ev = []
            for r_u, u in enumerate(chunk):
                uid = p.user_ids[u]
                for r in np.flatnonzero(shown[r_u]):
                    ev.append(
                        {
                            "user_id": uid,
                            "item_id": p.item_ids[items[r_u, r]],
                            "type": "impression",
                            "position": int(r + 1),
                        }
                    )
                for r in np.flatnonzero(click[r_u]):
                    ev.append(
                        {"user_id": uid, "item_id": p.item_ids[items[r_u, r]], "type": "click"}
                    )
            svc.feedback(ev)  # <= 1000 events per request
            rows.append((items, shown, click))
        items = np.concatenate([r[0] for r in rows])
        shown = np.concatenate([r[1] for r in rows])
        click = np.concatenate([r[2] for r in rows])
        lt = p.long_tail[np.where(shown, items, 0)] & shown
        ww = np.broadcast_to(w, items.shape)
        imp_g = {str(g): int(shown[gcodes == j].sum()) for j, g in enumerate(gender.categories)}
        clk_g = {str(g): int(click[gcodes == j].sum()) for j, g in enumerate(gender.categories)}
        ctr = {g: clk_g[g] / max(imp_g[g], 1) for g in imp_g}
        per_round.append(
            {
                "strength": float(np.mean(strengths)),
                "lt_exposure": float((ww * lt).sum() / (ww * shown).sum()),
                "lt_clicks": int((click & lt).sum()),
                "clicks": int(click.sum()),
                "ctr": ctr,
                "imp": imp_g,
                "clk": clk_g,
            }
        )
    fair = svc.fairness()
    rows = {r["group"]: r for r in fair["user_groups"]["gender"]}
    imp = {str(g): 0 for g in gender.categories}
    clk = dict(imp)
    for r in per_round:
        for g in imp:
            imp[g] += r["imp"][g]
            clk[g] += r["clk"][g]
    monitor = {
        g: (rows[f"gender={g}"]["ctr"], rows[f"gender={g}"]["ctr_se"], clk[g] / max(imp[g], 1))
        for g in imp
    }
    return {
        "rounds": per_round,
        "final_strength": svc.strength(post),
        "n_adjustments": (svc.online.n_updates if svc.online else 0),
        "monitor": monitor,
        "privacy": fair["privacy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--folder", type=Path, default=Path(tempfile.gettempdir()) / "debiasrec-serve-bench"
    )
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    folder = ml100k_folder(args.folder)
    prepared = None
    results = {}
    tmp = Path(tempfile.mkdtemp())
    for n, (name, opts) in enumerate(arms().items()):
        t = time.perf_counter()
        cfg = ServeConfig.model_validate(
            {
                "model": "itemknn",
                "store": str(tmp / f"arm{n}.sqlite"),
                "synchronous": "NORMAL",
                "privacy": {**PRIVACY, "seed": args.seed},
                **opts,
            }
        )
        svc = Service(folder, cfg, prepared=prepared)
        prepared = (svc.pipeline.dataset, svc.pipeline.split)
        results[name] = simulate(svc, args.rounds, args.seed)
        svc.close()
        print(f"{name}: {time.perf_counter() - t:.1f}s", flush=True)
    groups = sorted(next(iter(results.values()))["rounds"][0]["ctr"])
    base = results["none"]["rounds"]
    base_ctr = {g: np.mean([r["ctr"][g] for r in base]) for g in groups}
    under = min(base_ctr, key=base_ctr.get)
    lines = [
        "| arm | final strength | adjustments | long-tail exposure share, round 1 -> last "
        "| long-tail clicks (all rounds) | clicks | "
        + " | ".join(f"CTR gender={g}" for g in groups)
        + " | CTR gap |",
        "| --- | ---: | ---: | --- | ---: | ---: | "
        + " | ".join("---:" for _ in groups)
        + " | ---: |",
    ]
    for name, res in results.items():
        rs = res["rounds"]
        imp_ctr = {g: np.mean([r["ctr"][g] for r in rs]) for g in groups}
        gap = max(imp_ctr.values()) - min(imp_ctr.values())
        lines.append(
            f"| {name} | {res['final_strength']:.2f} | {res['n_adjustments']} | "
            f"{rs[0]['lt_exposure']:.3f} -> {rs[-1]['lt_exposure']:.3f} | "
            f"{sum(r['lt_clicks'] for r in rs)} | {sum(r['clicks'] for r in rs)} | "
            + " | ".join(f"{imp_ctr[g]:.4f}" for g in groups)
            + f" | {gap:.4f} |"
        )
    traj = []
    for name, res in results.items():
        if "online" in name:
            s = ", ".join(f"{r['strength']:.2f}/{r['lt_exposure']:.2f}" for r in res["rounds"])
            traj.append(f"- {name}: {s}")
    body = (
        f"ML-100K, ItemKNN, {args.rounds} rounds x 943 users x top-{K}; a click needs the item "
        "in the user's held-out test set and an examination with probability 1/log2(rank+1); "
        "clicked items are masked afterwards. Long-tail = items outside the 20% most popular "
        "(the under-served item group); long-tail exposure share is position-weighted. CTR = "
        f"clicks per impression averaged over rounds; the under-served user group under the raw "
        f"model is gender={under}. Seed {args.seed}.\n\n"
        + "\n".join(lines)
        + "\n\nPer round, mean strength / long-tail exposure share of the online arms:\n\n"
        + "\n".join(traj)
    )
    mon = [
        "| arm | monitor | releases | "
        + " | ".join(f"gender={g}: published CTR ± SE / true CTR" for g in groups)
        + " |",
        "| --- | --- | ---: | " + " | ".join("---" for _ in groups) + " |",
    ]
    for name, res in results.items():
        pv = res["privacy"]
        kind = "exact" if pv["mechanism"] == "off" else f"private, epsilon {pv['epsilon']:g}/period"
        cells = []
        for g in groups:
            est, se, true = res["monitor"][g]
            shown = "-" if est is None else f"{est:.4f} ± {se:.4f}"
            cells.append(f"{shown} / {true:.4f}")
        mon.append(f"| {name} | {kind} | {pv.get('releases', '-')} | " + " | ".join(cells) + " |")
    body += (
        "\n\nThe fairness monitor at the end of each arm (GET /fairness): published CTR per "
        "gender with its standard error (sampling + privacy noise), against the CTR over all "
        "simulated impressions. The private monitor counts each user's first "
        f"{PRIVACY['max_events_per_user']} events per budget period of "
        f"{PRIVACY['period_releases']} releases; the open window is not published.\n\n"
        + "\n".join(mon)
    )
    print(body)
    if args.write:
        write_section(
            "serve feedback loop (ML-100K), private fairness monitor",
            f"python benchmarks/serve_feedback_loop.py --rounds {args.rounds} --write",
            body,
        )


if __name__ == "__main__":
    main()
