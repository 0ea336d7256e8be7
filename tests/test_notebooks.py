"""The example notebooks (examples/*.ipynb) run top to bottom, as a reader runs them.

Each notebook is executed in a fresh Jupyter kernel (nbclient) in a temporary folder, with
``LITEUNET_NOTEBOOK_QUICK=1`` (shorter training and smaller images, the same steps) and
``HF_HUB_OFFLINE=1`` (the default weights come from the package). The notebooks assert what
they show (cells found, F1 improved by fine-tuning, memory bounded), so a notebook that runs
but shows the wrong thing fails too. Notebooks that read the shared data sets skip, saying so,
when they are absent; the Ki-67 notebook also needs the ``lite_unet.ki67`` weights folder.
"""

from __future__ import annotations

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


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    data_root = _skip_unless_available(path.stem)
    monkeypatch.setenv("LITEUNET_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if data_root:  # the kernel runs in a temporary folder: name the data sets' folder explicitly
        monkeypatch.setenv("LITEUNET_DATASETS", data_root)
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError with the cell and its traceback
    code = [c for c in nb.cells if c.cell_type == "code"]
    if any("matplotlib" in c.source for c in code):
        figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
        assert figures, f"{path.name} plots with matplotlib but no figure came out"
