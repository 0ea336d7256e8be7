"""Points streamed to disk as a slide's tiles finish, and a checkpoint to resume from.

A slide's points go to ``<stem>.csv.part`` and ``<stem>.geojson.part`` one finished band of tiles
at a time; after each band the files are flushed to disk and ``<stem>.progress.json`` records
their lengths, the band reached and the few points still waiting for the next band's seam. A run
killed at any moment (``kill -9`` included) and started again truncates the files to the
recorded lengths and carries on, so the final ``<stem>.csv`` and ``<stem>.geojson`` are
byte-identical to those of a run never interrupted. At the end the GeoJSON is closed, the files
take their final names and ``<stem>.done.json`` holds the slide's summary (a later run skips the
slide).

The formats are those of :mod:`liteunet.io_formats` (CSV ``x,y,score,label,class``; QuPath
GeoJSON, one feature a line, ``(0, 0)`` the top-left corner), in level-0 pixels.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer per slide is then the caller's care
    fcntl = None  # type: ignore[assignment]

from ..io_formats import class_colors

__all__ = ["PointStream"]

_GEOJSON_HEAD = '{"type":"FeatureCollection","features":[\n'
_GEOJSON_TAIL = "\n]}\n"
_SUFFIX = {"csv": ".csv", "geojson": ".geojson"}


class PointStream:
    """Append-only CSV / GeoJSON writers for one slide, with a resumable checkpoint.

    Args:
        out_dir: folder of the outputs.
        stem: file name stem of this slide's outputs.
        label_names: class names, by label index.
        formats: any of ``"csv"``, ``"geojson"``.
        signature: what the run depends on (slide, model, settings); a checkpoint made with a
            different one is not resumed.

    Example:
        >>> s = PointStream(tmp, "slide", ("cell",), ("csv",), {"model": "m"})  # doctest: +SKIP
        >>> state = s.resume() or {"band": 0}  # doctest: +SKIP
        >>> s.append(np.array([[10.0, 20.0]]), np.array([0.9]), np.array([0])); s.checkpoint({"band": 1})  # doctest: +SKIP
        >>> s.finish({"count": 1})  # doctest: +SKIP
    """

    def __init__(self, out_dir: Path, stem: str, label_names: tuple[str, ...], formats: tuple[str, ...], signature: dict) -> None:
        unknown = [f for f in formats if f not in _SUFFIX]
        if unknown or not formats:
            raise ValueError(f"slide outputs: unknown format(s) {unknown or formats}; use csv, geojson")
        self.out_dir, self.stem, self.formats = Path(out_dir), stem, tuple(formats)
        self.label_names = tuple(label_names)
        self.signature = json.loads(json.dumps(signature))  # the form it takes once stored
        colors = class_colors(self.label_names)
        self._classes = [json.dumps({"name": n, "color": list(c)}, separators=(",", ":")) for n, c in zip(self.label_names, colors)]
        self.progress_path = self.out_dir / f"{stem}.progress.json"
        self.done_path = self.out_dir / f"{stem}.done.json"
        self._files: dict[str, Any] = {}
        self._lock: Any = None
        self.features = 0

    def final_path(self, fmt: str) -> Path:
        return self.out_dir / f"{self.stem}{_SUFFIX[fmt]}"

    def _part(self, fmt: str) -> Path:
        return self.out_dir / f"{self.stem}{_SUFFIX[fmt]}.part"

    # --- state ------------------------------------------------------------------------------------
    def finished(self) -> dict | None:
        """The summary of a finished run with this signature (its outputs all there), else ``None``."""
        try:
            done = json.loads(self.done_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if done.get("signature") != self.signature or not all(self.final_path(f).is_file() for f in self.formats):
            return None
        return done.get("summary")

    def lock(self, wait: float = 60.0) -> None:
        """Become the slide's one writer: an exclusive lock on ``<stem>.lock``, held until :meth:`finish` / :meth:`close`.

        A second writer of the same outputs (a run started twice, or a Dask worker of a killed
        run still finishing its slide) waits up to ``wait`` seconds, then gets an error. The
        lock goes with the process that holds it, ``kill -9`` included.

        Raises:
            TimeoutError: another process kept the lock for ``wait`` seconds.
        """
        if fcntl is None or self._lock is not None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.out_dir / f"{self.stem}.lock", "a+b")
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    f.close()
                    raise TimeoutError(
                        f"{self.out_dir / self.stem}: another process is writing this slide's outputs (a run "
                        "still going, or a Dask worker of a stopped run finishing it); let it finish or stop "
                        "it, then run again"
                    ) from None
                time.sleep(0.2)
        self._lock = f

    def _unlock(self, remove: bool = False) -> None:
        if self._lock is not None:
            if remove:
                Path(self._lock.name).unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def checkpoint_state(self) -> dict | None:
        """The last checkpoint's state, when it was made with this signature, without opening the files."""
        try:
            saved = json.loads(self.progress_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return saved.get("state") if saved.get("signature") == self.signature else None

    def resume(self) -> dict | None:
        """Open the part files; returns the last checkpoint's state, or ``None`` to start afresh."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        state = None
        try:
            saved = json.loads(self.progress_path.read_text(encoding="utf-8"))
            if saved.get("signature") == self.signature and all(self._part(f).is_file() for f in self.formats):
                state = saved
        except (OSError, ValueError):
            pass
        for fmt in self.formats:
            f = open(self._part(fmt), "r+b" if state else "wb")
            if state:
                f.truncate(state["bytes"][fmt])
                f.seek(state["bytes"][fmt])
            elif fmt == "csv":
                f.write(b"x,y,score,label,class\r\n")
            else:
                f.write(_GEOJSON_HEAD.encode())
            self._files[fmt] = f
        self.features = state["features"] if state else 0
        return state["state"] if state else None

    # --- writing ----------------------------------------------------------------------------------
    def append(self, xy: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """Write points: ``xy`` an ``(N, 2)`` array of ``(x, y)`` in level-0 pixels (pixel centres)."""
        rows = list(zip(xy.tolist(), np.asarray(scores, np.float32).tolist(), np.asarray(labels).tolist()))
        if "csv" in self._files:
            text = "".join(f"{x:.2f},{y:.2f},{s:.4f},{lab},{_csv_field(self.label_names[lab])}\r\n" for (x, y), s, lab in rows)
            self._files["csv"].write(text.encode("utf-8"))
        if "geojson" in self._files:
            parts = []
            for (x, y), s, lab in rows:
                sep = ",\n" if self.features else ""
                self.features += 1
                parts.append(
                    f'{sep}{{"type":"Feature","geometry":{{"type":"Point","coordinates":[{_num(round(x + 0.5, 3))},'
                    f'{_num(round(y + 0.5, 3))}]}},"properties":{{"objectType":"detection","classification":'
                    f'{self._classes[lab]},"measurements":{{"score":{_num(round(s, 5))}}}}}}}'
                )
            self._files["geojson"].write("".join(parts).encode("utf-8"))
        else:
            self.features += len(rows)

    def checkpoint(self, state: dict) -> None:
        """Flush the points written so far to disk, then record ``state`` with the files' lengths."""
        sizes = {}
        for fmt, f in self._files.items():
            f.flush()
            os.fsync(f.fileno())
            sizes[fmt] = f.tell()
        record = {"signature": self.signature, "bytes": sizes, "features": self.features, "state": state}
        tmp = self.progress_path.with_name(self.progress_path.name + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, self.progress_path)

    def finish(self, summary: dict) -> None:
        """Close the files under their final names and record the run as done."""
        for fmt, f in self._files.items():
            if fmt == "geojson":
                f.write(_GEOJSON_TAIL.encode())
            f.flush()
            os.fsync(f.fileno())
            f.close()
            os.replace(self._part(fmt), self.final_path(fmt))
        self._files.clear()
        self.done_path.write_text(json.dumps({"signature": self.signature, "summary": summary}, indent=2), encoding="utf-8")
        self.progress_path.unlink(missing_ok=True)
        self._unlock(remove=True)

    def close(self) -> None:
        """Close the part files without finishing (the checkpoint stays for a later run)."""
        for f in self._files.values():
            f.close()
        self._files.clear()
        self._unlock()


def _num(value: float) -> str:
    """A number as ``json.dumps`` writes it (so the GeoJSON equals :func:`liteunet.io_formats.write_geojson`'s)."""
    return json.dumps(value)


def _csv_field(text: str) -> str:
    return f'"{text.replace(chr(34), chr(34) * 2)}"' if any(c in text for c in ',"\r\n') else text
