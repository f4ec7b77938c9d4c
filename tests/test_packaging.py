"""The wheel holds every module of the checkout, and each imports from the wheel alone.

Package discovery is ``find_packages`` over the four source roots (setup.py); this test builds the
wheel the way pip would and imports every module from it in a fresh interpreter whose ``sys.path``
has the wheel and the installed dependencies but neither the checkout nor the editable install.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOTS = {"dna_zoo": "dna_zoo", "search": "dna_zoo/search", "export": "dna_zoo/export", "hub": "dna_zoo/hub"}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel_dir(tmp_path_factory) -> Path:
    # build from a copy of the sources, so no build/ folder of an earlier build can leak into the wheel
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for folder in ROOTS:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        # no build isolation: offline, with the setuptools the dev extra pins (>= 70.1 builds wheels itself)
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-qw", str(out), src],
        capture_output=True,
        text=True,
        cwd=src,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (whl,) = out.glob("dna_zoo-*.whl")
    site = tmp_path_factory.mktemp("site")
    with zipfile.ZipFile(whl) as z:
        z.extractall(site)
    return site


def test_wheel_has_every_source_module(wheel_dir):
    expected = {
        f"{dest}/{p.relative_to(ROOT / src).as_posix()}"
        for src, dest in ROOTS.items()
        for p in (ROOT / src).rglob("*.py")
        if "__pycache__" not in p.parts
    }
    got = {p.relative_to(wheel_dir).as_posix() for p in wheel_dir.rglob("*.py")}
    assert expected - got == set(), f"missing from the wheel: {sorted(expected - got)}"
    assert (wheel_dir / "dna_zoo" / "data" / "published.json").is_file()
    assert (wheel_dir / "dna_zoo" / "py.typed").is_file()


_IMPORT_ALL = """
import importlib, json, sys
site = sys.argv[1]
names = json.loads(sys.argv[2])
bad = {}
for n in names:
    try:
        m = importlib.import_module(n)
        if not m.__file__.startswith(site):
            bad[n] = "imported from " + m.__file__
    except Exception as e:
        bad[n] = f"{type(e).__name__}: {e}"
print(json.dumps(bad))
"""


def test_every_module_imports_from_the_wheel(wheel_dir, tmp_path):
    names = sorted(
        ".".join(p.relative_to(wheel_dir).with_suffix("").parts).removesuffix(".__init__")
        for p in (wheel_dir / "dna_zoo").rglob("*.py")
        if p.name != "__main__.py"  # runs the CLI when imported
    )

    # the dependencies' folders, without the checkout and without any .pth-installed editable finder (-S)
    def in_checkout(p: Path) -> bool:  # the checkout itself or a source folder (a .venv inside it is fine)
        return p == ROOT or any(p.is_relative_to(ROOT / d) for d in (*ROOTS, "tests"))

    deps = [p for p in sys.path if p and Path(p).is_dir() and not in_checkout(Path(p).resolve())]
    code = f"import sys; sys.path[:0] = {[str(wheel_dir), *deps]!r}\n" + _IMPORT_ALL
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, str(wheel_dir), json.dumps(names)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    bad = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(names) > 60 and not bad, bad
