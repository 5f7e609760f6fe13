"""The corpus of broken files (`corpus.py`) through `cim layers import` and `cim build`, and hostile options.

Each file goes through the command as a user runs it (`cim.cli.main`, in process): no crash, no traceback, an exit
code that means something and a message that names the file, the reason and the fix; the store's content is
byte-identical afterwards; an import that succeeds reports counts that add up (read = stored + rejected).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cim.cli import exit_code_for, main
from cim.errors import CimError
from layers import LayerStore
from tests.hostile.support import TRACEBACK, store_digest
from tests.hostile.corpus import Case, build_corpus, layer_corpus, points

def run_cli(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    """`cim ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def error_message(err: str) -> str:
    """The `error:` line of a failed command's stderr; anything before it must be one-line `warning:`s."""
    lines = err.strip().splitlines()
    assert lines and lines[-1].startswith("error:"), err
    assert all(line.startswith("warning:") for line in lines[:-1]), err
    return lines[-1]


def assert_refused(case: Case, path: Path, code: int, err: str) -> None:
    """A command refused `case`'s file at `path` as the case says: the exit code of its error (any non-zero one
    for a plain CimError), an `error:` line matching `case.match` and, when the case asks, naming the file."""
    assert code != 0 and (case.error is CimError or code == exit_code_for(case.error(""))), (code, err)
    message = error_message(err)
    assert re.search(case.match, message), message
    if case.names_file:
        assert (case.names or path.name) in message, message


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store that already holds a layer: a failed import must leave every byte of it as it was."""
    path = tmp_path_factory.mktemp("store") / "city.duckdb"
    src = path.with_name("points.gpkg")
    points(50).to_file(src, driver="GPKG")
    with LayerStore(path) as s:
        s.import_file(src, "existing", "public_topics", security="public")
    return path


def _options(kwargs: dict[str, object]) -> list[str]:
    args = []
    for k, v in kwargs.items():
        args += [f"--{k}", str(v)]
    return args


@pytest.mark.parametrize("case", layer_corpus(), ids=lambda c: c.name)
def test_layer_import_of_a_broken_file(case: Case, store: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = case.make(tmp_path)
    name = re.sub(r"[^a-z0-9_]", "_", case.name.lower())[:60]
    before = store_digest(store)
    code, out, err = run_cli(capsys, ["layers", "import", str(path), "--name", name, "--theme",
                                      "public_topics", "--store", str(store), "--json", *_options(case.kwargs)])
    assert not TRACEBACK.search(out + err), err
    if case.error is not None:
        assert_refused(case, path, code, err)
        assert store_digest(store) == before, "a failed import changed the store"
        return
    assert code == 0, err
    report = json.loads(out)
    assert report["read"] == report["feature_count"] + len(report["rejected"])
    if case.rejected is not None:
        assert len(report["rejected"]) == case.rejected, report["rejected"]
    if case.match:
        assert any(re.search(case.match, r["reason"]) for r in report["rejected"]), report["rejected"]
    assert all(r["reason"] for r in report["rejected"])


@pytest.mark.parametrize("case", build_corpus(), ids=lambda c: c.name)
def test_build_from_a_broken_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = case.make(tmp_path / "in")
    kwargs = dict(case.kwargs)
    role = kwargs.pop("role")
    kwargs[role] = path
    if role == "oblique":
        kwargs["level"] = 3
    elif role != "dem":
        kwargs["dem"] = tmp_path / "in" / "dem.tif"
    out_dir = tmp_path / "model"
    code, out, err = run_cli(capsys, ["build", str(out_dir), "--json", *_options(kwargs)])
    assert not TRACEBACK.search(out + err), err
    if case.error is not None:
        assert_refused(case, path, code, err)
        assert not out_dir.exists() or not any(out_dir.iterdir()), "a failed build left output behind"
        return
    assert code == 0, err
    report = json.loads(out)
    assert report["buildings"]["skipped"]["count"] == case.rejected, report["buildings"]["skipped"]


@pytest.mark.parametrize("option,value", [
    ("--default-height", "nan"), ("--default-height", "inf"), ("--storey-height", "-3"), ("--storey-height", "0"),
    ("--max-error", "nan"), ("--max-error", "-inf"),
])
def test_build_refuses_numeric_options_that_are_not_finite(option: str, value: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, ["build", str(tmp_path / "m"), option, value, "--dem", str(tmp_path / "x.tif")])
    assert code == 2 and not TRACEBACK.search(err)
    assert option.lstrip("-").replace("-", "_") in err.replace("-", "_") and "error:" in err


@pytest.mark.parametrize("args,match", [
    (["--where", "(" * 100 + "capacity > 1" + ")" * 100], "nested more than"),
    (["--where", "NOT " * 100 + "capacity > 1"], "nested more than"),
    (["--where", "capacity IN (" + ",".join(["1"] * 999) + ")"], "tokens"),
    (["--where", "name LIKE capacity"], "quoted LIKE pattern"),
    (["--where", "name LIKE 'a\\'"], "lone escape"),
    (["--bbox", "nan,nan,nan,nan"], "bbox"),
    (["--bbox", "0,0,inf,1"], "bbox"),
    (["--near", "nan,40"], "near"),
    (["--near", "113.3,40", "--k", "0"], "--k"),
    (["--fields", "geom,fid,nope"], "not a field"),
])
def test_layer_query_refuses_hostile_options(args: list[str], match: str, store: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, ["layers", "query", "existing", "--store", str(store), "--format", "csv",
                                      *args])
    assert code == 2 and not TRACEBACK.search(out + err), (code, err)
    assert match in err


def test_a_where_filter_with_crafted_wildcards_is_linear(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pattern = "%" + "_%" * 300 + "x"
    code, out, err = run_cli(capsys, ["layers", "query", "existing", "--store", str(store), "--format", "csv",
                                      "--where", f"name LIKE '{pattern}' OR CASEI(name) LIKE CASEI('{pattern}')"])
    assert code == 0, err
    assert out.splitlines()[1:] == []  # a header and no row


def test_a_full_disk_leaves_the_store_as_it_was(tmp_path: Path) -> None:
    """The import's writes fail part-way (a file size limit stands in for a full disk): a clean error, and the
    store still opens with every byte of its content."""
    import subprocess
    import sys

    store = tmp_path / "city.duckdb"
    small, src = tmp_path / "small.gpkg", tmp_path / "big.parquet"
    points(100).to_file(small, driver="GPKG")
    points(200_000).to_parquet(src)  # megabytes to write: far past the limit set below
    with LayerStore(store) as s:
        s.import_file(small, "first", "public_topics")
    before = store_digest(store)
    size = store.stat().st_size + (store.with_suffix(".duckdb.wal").stat().st_size
                                   if store.with_suffix(".duckdb.wal").exists() else 0)
    script = (
        "import resource, signal, sys\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({size + 65536}, {size + 65536}))\n"
        "from cim.cli import main\n"
        f"main(['layers', 'import', {str(src)!r}, '--name', 'second', '--theme', 'public_topics', "
        f"'--store', {str(store)!r}])\n"
    )
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[2])
    assert r.returncode == 1, r.stderr
    assert not TRACEBACK.search(r.stderr) and "the write failed" in r.stderr and "Free disk space" in r.stderr
    assert store_digest(store) == before
