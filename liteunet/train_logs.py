"""A training run's logs: ``log.csv``, ``log.jsonl`` and ``curves.png``, one row per epoch."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any

__all__ = ["plot_curves", "write_logs"]

_logger = logging.getLogger("liteunet.train")


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Draw ``curves.png`` on a figure of its own.

    ``Figure`` with the Agg canvas, not pyplot: the caller's backend (inline in Jupyter) and
    pyplot's list of open figures are left as they were.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        _logger.info("matplotlib is not installed (pip install 'liteunet[plot]'): no curves.png")
        return
    epochs = [r["epoch"] for r in rows]
    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_f1 = fig.subplots(1, 2)
    ax_loss.plot(epochs, [r["train_loss"] for r in rows])
    ax_loss.set(xlabel="epoch", ylabel="train MSE", yscale="log", title="loss")
    for key in [k for k in rows[-1] if k.startswith("val/") and ("/f1@5" in k or "/f1@10" in k)]:
        ax_f1.plot(epochs, [r.get(key, math.nan) for r in rows], label=key[4:])
    ax_f1.set(xlabel="epoch", ylabel="F1", ylim=(0, 1), title="validation")
    ax_f1.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def write_logs(rows: list[dict[str, Any]], out: Path) -> None:
    """Write every epoch's row so far (a partial run leaves readable logs)."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (not k.startswith(("epoch", "step")), k))
    with (out / "log.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    (out / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plot_curves(rows, out / "curves.png")
