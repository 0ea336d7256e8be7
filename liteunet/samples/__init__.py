"""Small licence-clean sample images shipped with the package (see README.md here)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["sample_path", "list_samples"]

_HERE = Path(__file__).parent


def list_samples() -> list[str]:
    """Names of the bundled sample images."""
    return sorted(p.name for p in _HERE.glob("*.png"))


def sample_path(name: str = "bbbc039_A02_s1.png") -> Path:
    """Path of a bundled sample image (default: a BBBC039 fluorescence field, CC0).

    Example:
        >>> sample_path().name
        'bbbc039_A02_s1.png'
    """
    path = _HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"no sample image {name!r}; bundled samples: {list_samples()}")
    return path
