"""What ``localize()`` returns for one image: points, scores, classes, counts, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["LocalizationResult"]


@dataclass
class LocalizationResult:
    """The cell points found in one image.

    Attributes:
        xy: ``(N, 2)`` float32 points ``(x, y)`` in pixels of the input image (x = column,
            y = row, ``(0, 0)`` the centre of the top-left pixel), sorted by descending score.
        scores: ``(N,)`` float32 location-map value at each point, at most 1 (the map
            regresses peaks of height 1 and may overshoot them slightly).
        labels: ``(N,)`` int64 class of each point, an index into ``label_names``.
        image_size: ``(H, W)`` of the input image (level 0 for a pyramidal TIFF).
        source: the file path, or ``"input[i]"`` for an in-memory image.
        label_names: class names, e.g. ``("positive", "negative")`` for Ki-67 models.
        settings: what was used: ``threshold``, ``min_distance``, ``tile_size``, ``overlap``,
            ``scale``, ``level``, ``normalize``, ``model``...
        location_map: ``(num_classes, h, w)`` float32 map when asked for (``return_map``), at
            ``map_scale`` map pixels per input pixel; else ``None``.
        map_scale: map pixels per input pixel (``scale / downsample``).
        error: why the image failed (``on_error="skip"``); ``None`` when it succeeded.

    Example:
        >>> res = localize(np.zeros((64, 64), np.uint8), model=model)[0]  # doctest: +SKIP
        >>> res.xy.shape, res.count, res.counts  # doctest: +SKIP
        ((0, 2), 0, {'cell': 0})
    """

    xy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    image_size: tuple[int, int]
    source: str
    label_names: tuple[str, ...] = ("cell",)
    settings: dict[str, Any] = field(default_factory=dict)
    location_map: np.ndarray | None = None
    map_scale: float = 1.0
    error: str | None = None

    def __len__(self) -> int:
        return int(self.xy.shape[0])

    @property
    def ok(self) -> bool:
        """Whether the image was localized (``error is None``)."""
        return self.error is None

    @property
    def count(self) -> int:
        """Number of cells found."""
        return len(self)

    @property
    def counts(self) -> dict[str, int]:
        """Number of cells per class name."""
        found = np.bincount(self.labels, minlength=len(self.label_names)) if len(self) else None
        return {
            name: int(found[i]) if found is not None else 0
            for i, name in enumerate(self.label_names)
        }

    @property
    def ki67_index(self) -> float | None:
        """Ki-67 proliferation index, positive / (positive + negative) in [0, 1].

        Only for 2-class models (the class named ``"positive"``, else class 0, is positive);
        ``None`` for other models and for an image without cells.
        """
        if len(self.label_names) != 2 or len(self) == 0:
            return None
        names = [n.lower() for n in self.label_names]
        pos = names.index("positive") if "positive" in names else 0
        return float(np.count_nonzero(self.labels == pos) / len(self))

    @classmethod
    def failed(
        cls,
        source: str,
        error: str,
        label_names: tuple[str, ...] = ("cell",),
        settings: dict[str, Any] | None = None,
    ) -> LocalizationResult:
        """A result for an image that could not be localized: no points, ``error`` set."""
        return cls(
            xy=np.zeros((0, 2), np.float32),
            scores=np.zeros(0, np.float32),
            labels=np.zeros(0, np.int64),
            image_size=(0, 0),
            source=source,
            label_names=label_names,
            settings=dict(settings or {}),
            error=error,
        )

    @property
    def provenance(self) -> str:
        """One line saying what made these points: liteunet version, weights and settings.

        Example:
            >>> LocalizationResult.failed("a.png", "bad").provenance
            'liteunet ?'
        """
        s = self.settings
        weights = s.get("weights") or {}
        parts = [f"liteunet {s.get('liteunet_version', '?')}"]
        if weights:
            where = ", ".join(f"{k} {weights[k]}" for k in ("revision", "file") if k in weights)
            parts.append(f"weights {weights.get('name')}" + (f" ({where})" if where else ""))
        parts += [f"{k} {s[k]}" for k in ("threshold", "min_distance", "tta", "tuned_for", "precision") if s.get(k) is not None]
        if s.get("zoom_estimated") is not None:  # the weights' learned scale model
            parts.append(f"object size auto: image at {s['zoom_estimated']}x the training magnification")
        elif s.get("object_size") is not None:
            size = s.get("object_size_estimated") if s["object_size"] == "auto" else s["object_size"]
            how = "estimated " if s["object_size"] == "auto" else ""
            parts.append(f"object size {how}{size} px (trained {s.get('object_size_trained')} px)")
        if s.get("scale") not in (None, 1.0):
            parts.append(f"scale {s['scale']:.4g}")
        return "; ".join(parts)

    def summary(self) -> dict[str, Any]:
        """One row of numbers: source, status, image size, counts, Ki-67 index, error."""
        row: dict[str, Any] = {
            "image": self.source,
            "status": "ok" if self.ok else "failed",
            "height": self.image_size[0],
            "width": self.image_size[1],
            "count": self.count,
        }
        row.update({f"count_{k}": v for k, v in self.counts.items()})
        if len(self.label_names) == 2:
            row["ki67_index"] = self.ki67_index
        row["error"] = self.error or ""
        return row

    def to_dict(self, points: bool = True) -> dict[str, Any]:
        """JSON-ready dict: the summary, the settings and (``points=True``) every point."""
        out: dict[str, Any] = {
            "image": self.source,
            "image_size": {"height": self.image_size[0], "width": self.image_size[1]},
            "label_names": list(self.label_names),
            "settings": _jsonable(self.settings),
            "count": self.count,
            "counts": self.counts,
        }
        if len(self.label_names) == 2:
            out["ki67_index"] = self.ki67_index
        if self.error is not None:
            out["error"] = self.error
        if points:
            out["points"] = [
                {
                    "x": round(float(x), 2),
                    "y": round(float(y), 2),
                    "score": round(float(s), 4),
                    "label": int(lab),
                    "class": self.label_names[int(lab)],
                }
                for (x, y), s, lab in zip(self.xy, self.scores, self.labels)
            ]
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic,)):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
