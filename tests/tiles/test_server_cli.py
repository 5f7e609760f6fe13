"""`cim serve` and `cim keys` from the command line: a real server process, key management, config errors."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

import cli
from tests.support.http import free_port
from tests.support.processes import stop_process
from tests.tiles.server_support import build_store

pytestmark = pytest.mark.slow
runner = CliRunner()


@contextlib.contextmanager
def _cim_serve(args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
               ) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`cim serve ARGS --port P` in a child process (the installed command, else this checkout's cli.py); yields its
    base URL once /health answers, and the process, terminated when the block ends (its stderr left to read)."""
    port = free_port()
    exe = Path(sys.executable).with_name("cim")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-c", "import cli; cli.main()"]
    proc = subprocess.Popen([*cmd, "serve", *args, "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE,
                            env={**(os.environ if env is None else env), "PYTHONPATH": str(Path(cli.__file__).parent)})
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(proc.stderr.read().decode() if proc.stderr else "server did not start")
                time.sleep(0.2)
        yield base, proc
    finally:
        stop_process(proc, timeout=20)


def test_keys_create_list_revoke_audit(tmp_path: Path) -> None:
    store = tmp_path / "city.duckdb"
    r = runner.invoke(cli.app, ["keys", "create", "--scope", "internal,layer:hazards", "--label", "qgis",
                                "--store", str(store), "--json"])
    assert r.exit_code == 0, r.output
    new = json.loads(r.stdout)
    assert new["key"].startswith(f"cim_{new['id']}_") and new["scope"] == ["internal", "layer:hazards"]
    assert (tmp_path / "city.access.sqlite").is_file()
    listed = json.loads(runner.invoke(cli.app, ["keys", "list", "--store", str(store), "--json"]).stdout)
    assert [k["id"] for k in listed] == [new["id"]] and "key" not in listed[0]
    r = runner.invoke(cli.app, ["keys", "revoke", new["id"], "--store", str(store)])
    assert r.exit_code == 0 and f"revoked key {new['id']}" in r.stdout
    r = runner.invoke(cli.app, ["keys", "audit", "--store", str(store)])
    assert r.exit_code == 0 and "no accesses recorded" in r.stdout
    r = runner.invoke(cli.app, ["keys", "create", "--scope", "everything", "--store", str(store)])
    assert r.exception is not None and cli.exit_code_for(r.exception) == 2  # the CLI runner skips main()


def test_serve_rejects_bad_configuration_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["serve", "--models", str(tmp_path)],  # no tileset.json
                 ["serve", "--map", f"ortho={tmp_path / 'missing.tif'}"],
                 ["serve", "--models", f"Bad Name={tmp_path}"]):
        with pytest.raises(SystemExit) as exc:
            cli.main([*args, "--store", str(tmp_path / "none.duckdb"), "--port", "1"])
        assert exc.value.code == 2, args
    err = "".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "tileset.jsondoesnotexist" in err and "missing.tifdoesnotexist" in err


def test_cim_serve_process_answers_over_http(tmp_path: Path, box_tileset) -> None:  # type: ignore[no-untyped-def]
    store = build_store(tmp_path / "city.duckdb", tmp_path / "src")
    with _cim_serve(["--store", str(store), "--models", f"box={box_tileset.root}"]) as (base, proc):
        assert httpx.get(f"{base}/health").json() == {"status": "ok", "models": 1, "maps": 0, "layers": 3}
        cat = httpx.get(f"{base}/catalog").json()
        assert [m["name"] for m in cat["models"]] == ["box"] and [x["name"] for x in cat["layers"]] == ["shelters"]
        assert httpx.get(f"{base}/3dtiles/box/tileset.json").status_code == 200
    log = proc.stderr.read().decode() if proc.stderr else ""
    assert "GET /catalog 200" in log


def test_cim_serve_models_without_a_store(tmp_path: Path, box_tileset, capsys) -> None:  # type: ignore[no-untyped-def]
    """A city that has built a model but keeps no layers yet serves it: no --store, no ./cim.duckdb, no $CIM_STORE.
    A --store that does not exist is refused with the command that creates one."""
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CIM_STORE"}
    with _cim_serve(["--models", str(box_tileset.root)], cwd=work, env=env) as (base, _):
        assert httpx.get(f"{base}/health").json() == {"status": "ok", "models": 1, "maps": 0, "layers": 0}
        cat = httpx.get(f"{base}/catalog", timeout=10).json()
        assert [m["name"] for m in cat["models"]] == [box_tileset.root.name] and cat["layers"] == []
        assert httpx.get(f"{base}/3dtiles/{box_tileset.root.name}/tileset.json", timeout=10).status_code == 200
    assert not list(work.iterdir())  # no store (nor key file) was created on the way
    with pytest.raises(SystemExit) as exc:
        cli.main(["serve", "--models", str(box_tileset.root), "--store", str(tmp_path / "none.duckdb"), "--port", "1"])
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.code == 3 and "none.duckdb does not exist" in err and "cim layers import FILE" in err
