"""The installed wheel: its top-level modules, and its `cim` command beside another distribution's `cli` module.

The design keeps `cli.py` at the repository root, but a wheel that installed it as a top-level `cli` module would
overwrite (or be overwritten by) any other distribution shipping one. The console script therefore points at
`cim.cli:main` and the wheel ships only `cim`, `tiles` and `layers`.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import REPO_ROOT

pytestmark = pytest.mark.slow


def _other_cli_wheel(out: Path) -> Path:
    """A minimal wheel of another distribution ("othercli") that owns a top-level `cli` module."""
    wheel = out / "othercli-1.0-py3-none-any.whl"
    files = {
        "cli.py": "WHO = 'othercli'\n",
        "othercli-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: othercli\nVersion: 1.0\n",
        "othercli-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        "othercli-1.0.dist-info/top_level.txt": "cli\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "othercli-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(wheel, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        z.writestr("othercli-1.0.dist-info/RECORD", record)
    return wheel


@pytest.fixture(scope="module")
def our_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # build from a clean copy: an in-tree build reuses build/lib, which may hold files of an older layout
    src = tmp_path_factory.mktemp("src")
    for name in ("cim", "tiles", "layers"):
        shutil.copytree(REPO_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "cli.py"):
        shutil.copy2(REPO_ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = out.glob("cim_engine-*.whl")
    return wheel


def test_the_wheel_ships_cim_tiles_and_layers_and_no_top_level_cli(our_wheel: Path) -> None:
    with zipfile.ZipFile(our_wheel) as z:
        top = {name.split("/")[0] for name in z.namelist() if not name.split("/")[0].endswith(".dist-info")}
        entry_points = next(z.read(n).decode() for n in z.namelist() if n.endswith("entry_points.txt"))
    assert top == {"cim", "tiles", "layers"}
    assert "cim = cim.cli:main" in entry_points


def test_cim_command_works_beside_another_distributions_cli_module(our_wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py, cim_exe = venv / "bin" / "python", venv / "bin" / "cim"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Our dependencies come from this interpreter's site-packages as a plain path entry (its .pth files, among
    # them the editable install of this checkout, are not processed), so the fresh venv runs the wheel's code.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*pip, str(_other_cli_wheel(tmp_path))], check=True)
    subprocess.run([*pip, str(our_wheel)], check=True)

    version = subprocess.run([str(cim_exe), "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip().startswith("cim ")
    where = subprocess.run([str(py), "-c", "import cim, cli; print(cli.WHO); print(cim.__file__)"],
                           capture_output=True, text=True, check=True, cwd=tmp_path).stdout.split()
    assert where[0] == "othercli"
    assert Path(where[1]).is_relative_to(site)  # the wheel's cim, not this checkout's
