"""The napari plugin's packaging: an optional extra, an npe2 manifest, no import from the core.

These checks read files only (and run ``npe2 validate`` where npe2 is installed); the widget
itself is tested in ``test_napari.py`` with a real viewer.
"""

import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "liteunet" / "napari" / "napari.yaml"
QT_BINDINGS = ("pyqt5", "pyqt6", "pyside2", "pyside6")


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def _names(requirements: str) -> set[str]:
    """Distribution names of a setup.cfg requirement list, lower case, without versions."""
    lines = [ln.split("#")[0].strip() for ln in requirements.splitlines()]
    return {re.split(r"[<>=!~\[; ]", ln, maxsplit=1)[0].lower() for ln in lines if ln}


def test_napari_is_an_optional_extra():
    cfg = _setup_cfg()
    extra = _names(cfg["options.extras_require"]["napari"])
    assert {"napari", "npe2"} <= extra
    assert extra & set(QT_BINDINGS), "the extra must bring a Qt binding"
    # The core install does not grow: napari, its widgets and Qt stay in the extra.
    core = _names(cfg["options"]["install_requires"])
    assert not core & {"napari", "npe2", "magicgui", "qtpy", "pytest-qt", *QT_BINDINGS}
    # CI installs .[dev]: the plugin's tests need the extra and pytest-qt there.
    dev = _names(cfg["options.extras_require"]["dev"])
    assert extra <= dev and "pytest-qt" in dev


def test_manifest_is_declared_and_packaged():
    cfg = _setup_cfg()
    entry_points = cfg["options.entry_points"]["napari.manifest"]
    assert entry_points.strip() == "liteunet = liteunet.napari:napari.yaml"
    assert "napari.yaml" in cfg["options.package_data"]["liteunet.napari"]
    assert MANIFEST.is_file()


def test_core_does_not_import_the_plugin():
    """Only liteunet/napari may import napari; the rest of liteunet never imports it."""
    pattern = re.compile(r"^\s*(from|import)\s+(liteunet\.napari|\.napari|napari)\b|from\s+\.\s+import\s+napari", re.M)
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "liteunet").rglob("*.py")
        if "napari" not in p.relative_to(ROOT / "liteunet").parts and pattern.search(p.read_text())
    ]
    assert offenders == []


def test_docs_page_in_nav():
    assert "napari.md" in (ROOT / "mkdocs.yml").read_text()
    assert (ROOT / "docs" / "napari.md").is_file()


def test_npe2_validate():
    pytest.importorskip("npe2")
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST)],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout
