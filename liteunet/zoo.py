"""The model zoo table, read from the weights folders rather than typed by hand.

Every published tag is a folder ``weights/<tag>/`` holding ``model.safetensors``, timm's
``config.json`` (with the ``training``, ``localization`` and ``evaluation`` records that
``liteunet train`` and ``liteunet.release`` write) and a model card ``README.md``. This module
turns each folder into one :class:`ZooEntry` and the entries into a Markdown table; the
documentation's *Model zoo* page is built with it, so a new folder appears there by existing.

Latency comes from a benchmark file when one is given (``docs/benchmarks/latest.json``, written
by ``liteunet bench``), and is shown as "—" otherwise: no number is shown that was not measured.

Example:
    >>> from liteunet.zoo import zoo_entries, render_zoo_table
    >>> entries = zoo_entries("weights")  # doctest: +SKIP
    >>> print(render_zoo_table(entries))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .complexity import count_macs, count_params
from .model_card import DATASET_TERMS
from .models import create_model

__all__ = [
    "ZooEntry", "default_weights_dir", "read_benchmarks", "render_zoo_descriptions", "render_zoo_table",
    "zoo_entries",
]

DASH = "—"
# Latency keys accepted in a benchmark record, most specific first (milliseconds per image).
_LATENCY_KEYS = ("latency_ms", "median_ms", "ms")


@dataclass
class ZooEntry:
    """One pretrained tag of the zoo, as its weights folder describes it.

    Attributes:
        tag: the folder name, e.g. ``lite_unet.multi``.
        architecture: the registered model (``lite_unet``).
        num_classes: location maps out (2 for Ki-67: positive, negative).
        description: the card's summary (``config.json`` ``card.summary``), else timm's
            ``pretrained_cfg.description``.
        datasets: the data sets (or folders) it was trained on.
        metrics: per evaluated set, ``{"f1@5", "f1@10", "mae"}`` where recorded.
        metrics_source: ``"evaluation"`` (the folder's full-split evaluation) or ``"training"``
            (the validation the training run recorded at its best epoch), or ``""``.
        params: parameter count.
        macs_512: multiply-accumulates of one 3x512x512 image (the paper's "GFLOPs").
        licence: the card's ``license`` front-matter value (``other``, ``cc0-1.0``...).
        data_terms: the terms of use of the training data (``liteunet.model_card.DATASET_TERMS``).
        latency: benchmark records for this tag (or its architecture): ``latency_ms`` plus the
            conditions they name (``device``, ``precision``, ``backend``, ``input_size``...).
        folder: the weights folder.
    """

    tag: str
    architecture: str
    num_classes: int
    description: str
    datasets: list[str]
    metrics: dict[str, dict[str, float]]
    metrics_source: str
    params: int | None
    macs_512: int | None
    licence: str
    data_terms: list[str]
    latency: list[dict[str, Any]] = field(default_factory=list)
    folder: Path | None = None


def default_weights_dir() -> Path:
    """The ``weights/`` folder of a source checkout (beside the ``liteunet`` package)."""
    return Path(__file__).resolve().parents[1] / "weights"


def _front_matter(card: str) -> dict[str, str]:
    """The ``key: value`` lines of a model card's YAML front matter (flat keys only)."""
    lines = card.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    out: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t")):
            out[key.strip()] = value.strip()
    return out


def read_benchmarks(path: str | os.PathLike | None) -> list[dict[str, Any]]:
    """Latency records from a benchmark JSON file; ``[]`` when the file is absent.

    Accepts a list of records, or an object whose ``"results"`` list holds them (the object's
    other scalar fields, e.g. ``device``, are defaults for every record). A record names its
    model under ``"model"`` (a tag such as ``lite_unet.multi`` or an architecture such as
    ``lite_unet``) and its time per image in milliseconds under ``"latency_ms"`` (or
    ``"median_ms"`` / ``"ms"``); other fields (``device``, ``precision``, ``backend``,
    ``input_size``, ``batch_size``) describe the conditions and are shown beside it.

    Raises:
        ValueError: the file exists but is not such a JSON document; the message names it.
    """
    if path is None or not Path(path).is_file():
        return []
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"benchmark file {path} is not valid JSON: {err}") from err
    defaults: dict[str, Any] = {}
    if isinstance(data, dict):
        defaults = {k: v for k, v in data.items() if not isinstance(v, (list, dict))}
        data = data.get("results")
    if not isinstance(data, list):
        raise ValueError(f"benchmark file {path}: expected a list of records or {{'results': [...]}}")  # noqa: TRY004 - a file with the wrong content
    records = []
    for i, record in enumerate(data):
        if not isinstance(record, dict) or "model" not in record:
            raise ValueError(f"benchmark file {path}: record {i} has no 'model'")
        latency = next((record[k] for k in _LATENCY_KEYS if isinstance(record.get(k), (int, float))), None)
        if latency is None:
            continue  # a record of something else (throughput, memory): not a latency
        records.append({**defaults, **record, "latency_ms": float(latency)})
    return records


def _metrics(config: dict[str, Any]) -> tuple[dict[str, dict[str, float]], str]:
    evaluation = (config.get("evaluation") or {}).get("metrics") or {}
    if evaluation:
        keep = ("f1@5", "f1@10", "mae")
        return {name: {k: m[k] for k in keep if k in m} for name, m in sorted(evaluation.items())}, "evaluation"
    validation = (config.get("training") or {}).get("validation") or {}
    out: dict[str, dict[str, float]] = {}
    for key, value in validation.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[2] in ("f1@5", "f1@10", "mae"):
            out.setdefault(parts[1], {})[parts[2]] = value
    return dict(sorted(out.items())), "training" if out else ""


def _entry(folder: Path, benchmarks: Sequence[dict[str, Any]]) -> ZooEntry:

    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    if "architecture" not in config:
        raise ValueError(f"{config_path} names no 'architecture' (not a timm weights folder)")
    card_path = folder / "README.md"
    licence = _front_matter(card_path.read_text()).get("license", "") if card_path.is_file() else ""
    training = config.get("training") or {}
    pretrained_cfg = config.get("pretrained_cfg") or {}
    datasets = [Path(d).name for d in training.get("datasets", [])]
    metrics, source = _metrics(config)
    tag = folder.name
    arch = config["architecture"]
    return ZooEntry(
        tag=tag,
        architecture=arch,
        num_classes=int(config.get("num_classes", 1)),
        description=(config.get("card") or {}).get("summary") or pretrained_cfg.get("description", ""),
        datasets=datasets,
        metrics=metrics,
        metrics_source=source,
        params=training.get("params"),
        macs_512=training.get("macs_512"),
        licence=licence,
        data_terms=sorted({DATASET_TERMS[d][1] for d in datasets if d in DATASET_TERMS}),
        latency=[r for r in benchmarks if r["model"] == tag]
        or [r for r in benchmarks if r["model"] == arch],
        folder=folder,
    )


def zoo_entries(
    weights_dir: str | os.PathLike | None = None, benchmarks: str | os.PathLike | None = None
) -> list[ZooEntry]:
    """One entry per weights folder (a sub-folder with a ``config.json``), sorted by tag.

    Args:
        weights_dir: the folder of weights folders; default :func:`default_weights_dir`.
        benchmarks: a benchmark JSON file (see :func:`read_benchmarks`); absent is fine.

    Returns:
        The entries; parameter and MAC counts that a folder does not record are counted from
        its architecture and ``model_args``.

    Raises:
        FileNotFoundError: ``weights_dir`` does not exist.
        ValueError: a folder's ``config.json`` is not valid or names no architecture.
    """
    root = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    if not root.is_dir():
        raise FileNotFoundError(f"weights folder not found: {root}")
    records = read_benchmarks(benchmarks)
    entries = [_entry(f, records) for f in sorted(root.iterdir()) if (f / "config.json").is_file()]
    for e in entries:
        if e.params is None or e.macs_512 is None:
            _count(e)
    return entries


def _count(entry: ZooEntry) -> None:

    config = json.loads((entry.folder / "config.json").read_text())
    model = create_model(entry.architecture, **(config.get("model_args") or {}))
    entry.params = count_params(model) if entry.params is None else entry.params
    if entry.macs_512 is None:
        entry.macs_512 = count_macs(model, (getattr(model, "in_chans", 3), 512, 512))


def _latency_cell(records: Sequence[dict[str, Any]]) -> str:
    if not records:
        return DASH
    cells = []
    for r in records:
        size = r.get("input_size")
        size = "x".join(str(s) for s in size[-2:]) if isinstance(size, (list, tuple)) else size
        conditions = ", ".join(str(v) for v in (r.get("device"), r.get("backend"), r.get("precision"), size) if v)
        cells.append(f"{r['latency_ms']:.1f} ms" + (f" ({conditions})" if conditions else ""))
    return "<br>".join(cells)


def _metrics_cell(entry: ZooEntry) -> str:
    if not entry.metrics:
        return DASH
    rows = [
        f"{name} {m['f1@5']:.3f} / {m['f1@10']:.3f}"
        for name, m in entry.metrics.items()
        if "f1@5" in m and "f1@10" in m
    ]
    return "<br>".join(rows) or DASH


def render_zoo_table(entries: Sequence[ZooEntry]) -> str:
    """The zoo as a Markdown table: tag, training data, F1, size, latency, licence.

    F1 is at 5 / 10 px per evaluated set (the paper's protocol), from the folder's full-split
    evaluation, else from the training run's validation (marked "val. during training"). The
    terms of the training data are in :func:`render_zoo_descriptions`.
    """
    lines = [
        "| tag | trained on | F1@5 / F1@10 (validation) | params | G MACs (512²) | latency | licence |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        classes = "1 class" if e.num_classes == 1 else f"{e.num_classes} classes"
        metrics = _metrics_cell(e)
        if e.metrics_source == "training":
            metrics += "<br>(val. during training)"
        lines.append(
            f"| `{e.tag}`<br>{classes} | {', '.join(f'`{d}`' for d in e.datasets) or DASH} "
            f"| {metrics} | {e.params / 1e6:.2f} M | {e.macs_512 / 1e9:.2f} | {_latency_cell(e.latency)} "
            f"| {f'`{e.licence}`' if e.licence else DASH} |"
        )
    return "\n".join(lines)


def render_zoo_descriptions(entries: Sequence[ZooEntry]) -> str:
    """Markdown: one section per tag with its card's summary and how to load it."""
    parts = []
    for e in entries:
        terms = "; ".join(e.data_terms) or "see the model card"
        parts += [
            f"### `{e.tag}`",
            "",
            e.description or f"`{e.architecture}` weights trained on {', '.join(e.datasets)}.",
            "",
            f"- architecture `{e.architecture}`, {e.num_classes} location map(s)",
            f"- licence `{e.licence or 'not stated'}`; terms of the training data: {terms}",
            "",
            "```python",
            f'model = liteunet.create_model("{e.tag}", pretrained=True)',
            "```",
            "",
            f"Model card and files: `weights/{e.tag}/` in the source tree (`README.md`, `config.json`).",
            "",
        ]
    return "\n".join(parts)
