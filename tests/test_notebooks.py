"""The example notebooks (examples/*.ipynb) run top to bottom, as a reader runs them.

Each notebook is executed in a fresh Jupyter kernel (nbclient) started in ``examples/``, where a
reader opens it, importing this checkout's ``liteunet`` (``PYTHONPATH``), with
``LITEUNET_NOTEBOOK_QUICK=1`` (shorter training and smaller images, the same steps),
``HF_HUB_OFFLINE=1`` (the default weights come from the package) and ``TMPDIR`` set to the
test's temporary folder (the notebooks write their files under ``tempfile.mkdtemp()``).
The notebooks assert what they show (cells found, F1 improved by fine-tuning, memory bounded), so
a notebook that runs but shows the wrong thing fails too; the test checks that every cell that
calls ``plt.show()`` shows its figure, that no warning (such as tqdm's "IProgress not found") is
printed, and that running a notebook leaves no new file in the source tree. Notebooks that read
the shared data sets skip, saying so, when they are absent; the Ki-67 notebook also needs the
``lite_unet.ki67`` weights folder."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="notebook tests need the dev extra: pip install -e '.[dev]'")
nbclient = pytest.importorskip("nbclient", reason="notebook tests need the dev extra: pip install -e '.[dev]'")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
KI67_WEIGHTS = ROOT / "weights" / "lite_unet.ki67"
# What each notebook needs beyond the package: shared data sets, weights folders, modules.
NEEDS = {
    "02_finetune_your_own_points": {"datasets": ["bcdata"]},
    "04_ki67_scoring": {"datasets": ["bcdata"], "weights": [KI67_WEIGHTS]},
    "05_large_images": {"modules": ["tifffile"]},
}
# Cells that must show a figure beyond those that call plt.show(), named by a line they hold:
# notebook 02's training curves and before/after comparison are drawn after train() runs, which
# once switched matplotlib to Agg for the whole kernel and left them blank.
FIGURES = {
    "02_finetune_your_own_points": ['log = list(csv.DictReader(f))', 'zip(axes, (default, tuned)'],
}


def test_the_five_notebooks_of_the_issue_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "01_quickstart", "02_finetune_your_own_points", "03_plug_and_play_layers",
        "04_ki67_scoring", "05_large_images",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    """Outputs stay out of git so that diffs show only what was written."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name} cell {i} has outputs: clear them before committing "
                "(e.g. jupyter nbconvert --clear-output --inplace)"
            )


def _skip_unless_available(stem: str) -> str | None:
    """Skip with the reason when something the notebook needs is absent; the data root if any."""
    needs = NEEDS.get(stem, {})
    root = None
    for module in needs.get("modules", []):
        pytest.importorskip(module, reason=f"{stem} needs {module} (pip install -e '.[dev]')")
    if needs.get("datasets"):
        from liteunet.data import resolve_root

        try:
            root = resolve_root()
        except FileNotFoundError as err:
            pytest.skip(f"shared data sets not found: set LITEUNET_DATASETS ({err})")
        for name in needs["datasets"]:
            if not (root / name).is_dir():
                pytest.skip(f"{stem} reads the shared data set {name!r}, not found in {root}")
    for folder in needs.get("weights", []):
        if not (folder / "model.safetensors").is_file():
            pytest.skip(f"{stem} needs the weights folder {folder.relative_to(ROOT)}, not in this checkout")
    return None if root is None else str(root)


def _untracked() -> set[str] | None:
    """Files git does not track or ignore in this checkout; None outside a git checkout."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return None
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    return None if out.returncode else {line[3:] for line in out.stdout.splitlines() if line.startswith("??")}


def _text(output) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return str(output.get("data", {}).get("text/plain", ""))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    data_root = _skip_unless_available(path.stem)
    monkeypatch.setenv("LITEUNET_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp() writes here
    # The kernel imports this checkout's liteunet, not whichever one is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    if data_root:  # a data root found from the test's folder: name it to the kernel explicitly
        monkeypatch.setenv("LITEUNET_DATASETS", data_root)
    before = _untracked()
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(EXAMPLES)}}
    )
    client.execute()  # raises CellExecutionError with the cell and its traceback
    code = [c for c in nb.cells if c.cell_type == "code"]

    # Every figure the notebook draws is shown, in the cell that draws it.
    expected = [c for c in code if "plt.show()" in c.source]
    for line in FIGURES.get(path.stem, []):
        cells = [c for c in code if line in c.source]
        assert len(cells) == 1, f"{path.name}: no single cell holds {line!r}; update FIGURES"
        assert cells[0] in expected, f"{path.name}: the cell with {line!r} no longer calls plt.show()"
    for cell in expected:
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pngs, f"{path.name}: this cell shows no figure:\n{cell.source[:300]}"

    # Nothing warns (tqdm's "IProgress not found" when ipywidgets is missing, for one).
    for cell in code:
        for output in cell.outputs:
            text = _text(output)
            assert "Warning" not in text, f"{path.name} printed a warning:\n{text[:500]}"

    # Files go to a temporary folder, not beside the notebook.
    after = _untracked()
    if before is not None and after is not None:
        assert after <= before, f"{path.name} left new files in the source tree: {sorted(after - before)}"
