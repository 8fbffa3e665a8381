"""Bad inputs through the real entry point: exit 2, one ``error:`` line naming the file, row or
field, never a traceback; Ctrl-C exits 130; progress only on a terminal.

Each class of bad input from the hardening issue has its own test, with the reported example and
its neighbours (e.g. for the delimiter: two characters, empty, a newline, a quote).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from debiasrec import limits

TIMEOUT = 120
SRC = str(Path(__file__).resolve().parents[2] / "src")


def _one_clear_error(res, *needles: str) -> None:
    """Exit 2, a single ``error:`` line first, no traceback, every needle in the message."""
    assert res.code == 2, (res.code, res.err)
    assert "Traceback" not in res.err, res.err
    errors = [line for line in res.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.err
    for needle in needles:
        assert needle in res.err, (needle, res.err)


@pytest.fixture(scope="module")
def audit_files(tiny, tmp_path_factory):
    """Held-out test (2 per user) and top-10 lists for every user of the tiny data."""
    folder = tmp_path_factory.mktemp("audit_inputs")
    inter = tiny.frame
    test = inter.groupby("user_id").tail(2)[["user_id", "item_id"]]
    test.to_csv(folder / "test.csv", index=False)
    rows = [(u, 100 + j, j + 1) for u in inter["user_id"].unique() for j in range(10)]
    recs = pd.DataFrame(rows, columns=["user_id", "item_id", "rank"])
    recs.to_csv(folder / "recs.csv", index=False)
    return {"folder": folder, "test": folder / "test.csv", "recs": folder / "recs.csv",
            "recs_frame": recs}  # fmt: skip


def _audit(cli, tiny, files, *extra, recs=None, users=None, out=None):
    out = out or files["folder"] / "out"
    return cli(
        "audit", "--recs", recs or files["recs"], "--test", files["test"],
        "--users", users or tiny.users, "--attr", "gender", "--n-boot", 20, "--out", out, *extra,
    )  # fmt: skip


# ------------------------------------------------------------------------------ delimiter


@pytest.mark.parametrize(
    ("delimiter", "needle"),
    [(";;", "exactly one character"), ("::", "exactly one character"),
     ("", "exactly one character"), ("ab", "exactly one character"),
     ("\n", "cannot separate fields"), ('"', "cannot separate fields")],
    ids=["double-semicolon", "double-colon", "empty", "letters", "newline", "quote"],
)  # fmt: skip
@pytest.mark.parametrize("command", ["describe", "import"])
def test_bad_delimiter(command, delimiter, needle, tiny, cli, tmp_path) -> None:
    args = ["data", command, tiny.interactions, "--delimiter", delimiter]
    if command == "import":
        args += ["--out", tmp_path / "out"]
    _one_clear_error(cli(*args), "--delimiter", needle, repr(delimiter))
    assert not (tmp_path / "out").exists()


def test_bad_delimiter_in_a_run_config(make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml", data_extra="delimiter = ';;'")
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), "exactly one character")


def test_tab_delimiter_by_name(tiny, cli, tmp_path) -> None:
    tsv = tmp_path / "inter.txt"
    tiny.frame.to_csv(tsv, sep="\t", index=False)
    res = cli("data", "describe", tsv, "--delimiter", "\\t", "--json")
    assert res.code == 0, res.err


# ------------------------------------------------------------------------------ repeated attributes


@pytest.mark.parametrize("attrs", ["gender,gender", "gender,age,gender", "age, age"])
def test_repeated_attribute_in_audit(attrs, tiny, audit_files, cli) -> None:
    res = _audit(cli, tiny, audit_files, "--attr", attrs)
    name = attrs.split(",")[0].strip()
    _one_clear_error(res, "--attr", f"'{name}'", "more than once")


def test_repeated_attribute_in_describe(tiny, cli) -> None:
    res = cli("data", "describe", tiny.interactions, "--users", tiny.users, "--sensitive",
              "gender,gender")  # fmt: skip
    _one_clear_error(res, "--sensitive", "'gender'", "more than once")


def test_repeated_attribute_in_a_run_config(make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text().replace('["gender", "age"]', '["gender", "gender"]'))
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), "'gender'", "more than once")


# ------------------------------------------------------------------------------ config files


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('name = "caf\xe9"\n'.encode("latin-1"), ["line 1", "not UTF-8", "save it as UTF-8"]),
        (b'name = "x"\n\n[eval]\nks = [\xff]\n', ["line 4", "not UTF-8"]),
        ('name = "x"\n'.encode("utf-16"), ["NUL bytes", "UTF-8"]),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)), ["NUL bytes"]),
        (bytes(range(128, 256)), ["not UTF-8"]),
    ],
    ids=["latin-1", "bad-byte-line-4", "utf-16", "binary", "high-bytes"],
)
def test_config_not_utf8_text(content, needles, cli, tmp_path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_bytes(content)
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), str(cfg), *needles)


def test_config_with_utf8_bom_is_read(make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "bom.toml", top="recs_k = 99")  # invalid, so no run starts
    cfg.write_bytes(b"\xef\xbb\xbf" + cfg.read_bytes())
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), "recs_k")  # parsed past the BOM


def test_config_that_is_a_folder(cli, tmp_path) -> None:
    res = cli("run", tmp_path, "--out", tmp_path / "out")  # a usage error, from click
    assert res.code == 2 and "is a directory" in res.err and "Traceback" not in res.err


# ------------------------------------------------------------------------------ seeds


@pytest.mark.parametrize(
    ("find", "replace", "field"),
    [
        ("seeds = [0]", "seeds = [-1]", "seeds[0] = -1"),
        ("seeds = [0]", "seeds = [0, 18446744073709551616]", "seeds[1] = 18446744073709551616"),
        ("seeds = [0]", "seeds = [9223372036854775808]", "seeds[0] = 9223372036854775808"),
        ("seeds = [0]", "seeds = [0]\n[split]\nseed = -5", "split.seed = -5"),
    ],
    ids=["negative", "2**64", "2**63", "split-seed"],
)
def test_seed_out_of_range(find, replace, field, make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text().replace(find, replace))
    res = cli("run", cfg, "--out", tmp_path / "out")
    _one_clear_error(res, str(cfg), field, "not a valid seed", "2**63 - 1")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("seed", ["-1", str(2**63), "1.5"])
def test_audit_seed_out_of_range(seed, tiny, audit_files, cli) -> None:
    res = _audit(cli, tiny, audit_files, "--seed", seed)
    assert res.code == 2 and "--seed" in res.err and "Traceback" not in res.err


# ------------------------------------------------------------------------------ Parquet ids


@pytest.mark.parametrize(
    ("values", "what"),
    [([[1, 2], [3]], "a list"), ([{"a": 1}, {"a": 2}], "a dict"), ([b"u1", b"u2"], "bytes")],
    ids=["lists", "dicts", "bytes"],
)
def test_parquet_ids_that_are_not_scalars(values, what, cli, tmp_path) -> None:
    frame = pd.DataFrame({"user_id": pd.Series(values, dtype=object), "item_id": [1, 2]})
    path = tmp_path / "inter.parquet"
    frame.to_parquet(path, index=False)
    _one_clear_error(cli("data", "describe", path), str(path), "'user_id'", f"holds {what}",
                     "data row 1")  # fmt: skip


@pytest.mark.parametrize("column", ["user_id", "item_id"])
def test_audit_recs_parquet_with_list_ids(column, tiny, audit_files, cli, tmp_path) -> None:
    recs = audit_files["recs_frame"].astype({column: object})
    recs[column] = [[v] for v in recs[column]]
    path = tmp_path / "recs.parquet"
    recs.to_parquet(path, index=False)
    res = _audit(cli, tiny, audit_files, recs=path, out=tmp_path / "out")
    _one_clear_error(res, str(path), f"'{column}'", "holds a list")


# ------------------------------------------------------------------------------ split ratios


@pytest.mark.parametrize("ratios", ["[0.5, 0.5, 0.5]", "[8, 1, 1]", "[0.6, 0.1, 0.1]"])
def test_split_ratios_must_sum_to_one(ratios, make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml", top=f"[split]\nratios = {ratios}")
    res = cli("run", cfg, "--out", tmp_path / "out")
    _one_clear_error(res, "split ratios", "not 1", "normalise=True")


# ------------------------------------------------------------------------------ empty sensitive column


@pytest.fixture(scope="module")
def blank_users(tiny, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("blank") / "users_blank.csv"
    tiny.users_frame.assign(gender=np.nan).to_csv(path, index=False)
    return path


def test_empty_sensitive_column_in_audit(tiny, audit_files, blank_users, cli) -> None:
    res = _audit(cli, tiny, audit_files, users=blank_users)
    _one_clear_error(res, str(blank_users), "'gender'", "is empty")
    assert "n_users must be" not in res.err


def test_empty_sensitive_column_in_run(make_config, blank_users, tiny, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text().replace(str(tiny.users), str(blank_users)))
    res = cli("run", cfg, "--out", tmp_path / "out")
    _one_clear_error(res, str(blank_users), "'gender'", "is empty")
    assert "is empty" in res.err and "training data" not in res.err


def test_empty_sensitive_column_in_describe(tiny, blank_users, cli) -> None:
    res = cli("data", "describe", tiny.interactions, "--users", blank_users, "--sensitive",
              "gender")  # fmt: skip
    _one_clear_error(res, str(blank_users), "'gender'", "is empty")


def test_single_group_attribute_warns_and_gives_nan_gaps(tiny, audit_files, cli, tmp_path) -> None:
    users = tmp_path / "users_f.csv"
    tiny.users_frame.assign(gender="F").to_csv(users, index=False)
    out = tmp_path / "out"
    with pytest.warns(UserWarning) as record:
        res = _audit(cli, tiny, audit_files, users=users, out=out)
    assert res.code == 0, res.err
    shown = "\n".join(str(w.message) for w in record)
    assert "'gender' has a single group ('F')" in shown and str(users) in shown
    assert "leakage of 'gender' is not measured" in shown
    v = pd.read_parquet(out / "results.parquet").set_index(["metric", "group"])["value"]
    assert np.isnan(v[("gap_ndcg@10", "gender")])


# ------------------------------------------------------------------------------ bounds


def test_run_with_an_absurd_k(make_config, cli, tmp_path) -> None:
    """ks = [1e9]: refused before allocating (the report: 447 GiB), naming k."""
    cfg = make_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text().replace("ks = [5, 10]", "ks = [1e9]"))
    res = cli("run", cfg, "--out", tmp_path / "out")
    _one_clear_error(res, "eval.ks", "1,000,000,000", "at most")


def test_run_k_longer_than_the_catalogue(make_config, cli, tmp_path) -> None:
    cfg = make_config(tmp_path / "c.toml")
    cfg.write_text(cfg.read_text().replace("ks = [5, 10]", "ks = [5, 50]"))  # 40 items
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), "eval.ks", "40 items")


@pytest.mark.parametrize("k", [41, 1000, 10**9])
def test_audit_k_longer_than_the_catalogue(k, tiny, audit_files, cli, tmp_path) -> None:
    res = _audit(cli, tiny, audit_files, "--k", k, out=tmp_path / "out")
    _one_clear_error(res, "--k", f"{k:,}", "(40 items)", "at most 40")
    res = _audit(cli, tiny, audit_files, "--k", k, "--items", tiny.items, out=tmp_path / "out")
    _one_clear_error(res, "--k", str(tiny.items), "(40 items)")
    assert not (tmp_path / "out").exists()


def test_audit_k_equal_to_the_catalogue(tiny, audit_files, cli, tmp_path) -> None:
    res = _audit(cli, tiny, audit_files, "--k", 40, "--n-boot", 0, out=tmp_path / "out")
    assert res.code == 0, res.err


def test_audit_n_boot_beyond_memory(tiny, audit_files, cli, tmp_path) -> None:
    res = _audit(cli, tiny, audit_files, "--n-boot", 10**10, out=tmp_path / "out")
    _one_clear_error(res, "--n-boot", "10,000,000,000 bootstrap replicates", "TiB")
    assert not (tmp_path / "out").exists()


def test_audit_n_boot_against_a_memory_limit(tiny, audit_files, cli, tmp_path, monkeypatch) -> None:
    """1e7 replicates (the report) need ~5 GiB: refused where less is available."""
    monkeypatch.setenv(limits.MEMORY_ENV, str(2 * 2**30))
    res = _audit(cli, tiny, audit_files, "--n-boot", 10**7, out=tmp_path / "out")
    _one_clear_error(res, "--n-boot", "10,000,000 bootstrap replicates", "2.0 GiB is available")
    monkeypatch.setenv(limits.MEMORY_ENV, str(64 * 2**30))
    res = _audit(cli, tiny, audit_files, "--n-boot", 10, out=tmp_path / "out2")
    assert res.code == 0, res.err


def test_n_boot_as_a_float_is_a_usage_error(tiny, audit_files, cli, tmp_path) -> None:
    res = _audit(cli, tiny, audit_files, "--n-boot", "1e7", out=tmp_path / "out")
    assert res.code == 2 and "--n-boot" in res.err and "Traceback" not in res.err


def test_run_n_boot_against_a_memory_limit(make_config, cli, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(limits.MEMORY_ENV, str(2**30))
    cfg = make_config(tmp_path / "c.toml", models='[[models]]\nmodel = "pop"\n')
    cfg.write_text(cfg.read_text().replace("n_boot = 20", "n_boot = 10000000"))
    _one_clear_error(cli("run", cfg, "--out", tmp_path / "out"), "n_boot (eval.n_boot)",
                     "10,000,000 bootstrap replicates")  # fmt: skip


# ------------------------------------------------------------------------------ Ctrl-C


def _child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "HF_HUB_OFFLINE": "1"}  # fmt: skip


def _has_open(pid: int, path: Path) -> bool:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see open files")
def test_ctrl_c_exits_130(tmp_path) -> None:
    """SIGINT while the command reads its input: exit 130 and one line, no traceback."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(0)
    n = 3_000_000
    path = tmp_path / "inter.csv"
    table = pa.table({"user_id": rng.integers(0, 50_000, n), "item_id": rng.integers(0, 9_000, n),
                      "rating": rng.integers(1, 6, n)})  # fmt: skip
    pacsv.write_csv(table, path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "debiasrec.cli", "data", "describe", str(path)],
        env=_child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A child of a non-interactive shell may inherit SIGINT ignored; restore the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not _has_open(proc.pid, path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert proc.poll() is None, "the command finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "interrupted"


def test_keyboard_interrupt_in_process_exits_130(tiny, cli, monkeypatch) -> None:
    import importlib

    describe_mod = importlib.import_module(
        "debiasrec.data.describe"
    )  # the module, not the function

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(describe_mod, "describe", interrupted)
    res = cli("data", "describe", tiny.interactions)
    assert res.code == 130 and res.err.strip().splitlines()[-1] == "interrupted"
    assert "Traceback" not in res.err


# ------------------------------------------------------------------------------ progress


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a pseudo-terminal; return (exit code, what the terminal got)."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    # A new pseudo-terminal is 0 columns wide, and tqdm draws nothing on a 0-wide line.
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "debiasrec.cli", *map(str, args)],
        env=_child_env(), stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=TIMEOUT), b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_on_a_terminal_only(tiny, audit_files, cli, tmp_path) -> None:
    args = ["data", "describe", tiny.interactions, "--users", tiny.users, "--sensitive", "gender"]
    code, shown = _on_a_terminal(args)
    assert code == 0, shown
    assert (
        "describe:" in shown and "duplicates" in shown and "/8" in shown
    )  # read, 6 purify steps, describe
    code, shown = _on_a_terminal([*args, "--quiet"])
    assert code == 0 and "describe:" not in shown
    res = cli(*args)  # stderr not a terminal: no bar
    assert res.code == 0 and res.err == ""
    code, shown = _on_a_terminal(["audit", "--recs", audit_files["recs"], "--test",
                                  audit_files["test"], "--users", tiny.users, "--attr", "gender",
                                  "--n-boot", 10, "--out", tmp_path / "out"])  # fmt: skip
    assert code == 0, shown
    assert "audit:" in shown and "leakage probe" in shown  # the evaluation step names it


# ------------------------------------------------------------------------------ output folders


@pytest.mark.parametrize("command", ["import", "audit", "run"])
def test_output_folder_that_cannot_be_written(
    command, tiny, audit_files, make_config, cli, tmp_path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    out = blocker / "out"  # a folder under a file: cannot be created (root or not)
    if command == "import":
        res = cli("data", "import", tiny.interactions, "--out", out)
    elif command == "audit":
        res = _audit(cli, tiny, audit_files, "--n-boot", 0, out=out)
    else:
        cfg = make_config(tmp_path / "c.toml", models='[[models]]\nmodel = "pop"\n')
        res = cli("run", cfg, "--out", out)
    _one_clear_error(res, f"cannot write to {out}", "choose a writable folder")


def test_recs_path_that_is_a_folder(tiny, audit_files, cli, tmp_path) -> None:
    res = _audit(cli, tiny, audit_files, recs=tmp_path, out=tmp_path / "out")
    _one_clear_error(res, str(tmp_path), "is a folder")
