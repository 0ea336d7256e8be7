"""Build hook: the wheel carries the default weights, copied from the top-level ``weights/`` folder.

Metadata lives in setup.cfg, build settings in pyproject.toml. ``weights/<default tag>/`` is the
only copy in git; ``build_py`` copies it into ``liteunet/_bundled_weights/<tag>/`` of the build,
and the sdist carries it so that a wheel built from the sdist (what ``python -m build`` does) has
it too. When the folder is absent, the wheel is built without bundled weights.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent

# Load liteunet/pretrained/bundled.py by path: importing the package would need torch at build time.
_spec = importlib.util.spec_from_file_location(
    "_liteunet_bundled", ROOT / "liteunet" / "pretrained" / "bundled.py"
)
_bundled = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bundled)


class BuildPyWithWeights(build_py):
    """``build_py`` that also copies ``weights/<default tag>/`` into the package."""

    def run(self) -> None:
        super().run()
        self._weights: list[Path] = []
        if getattr(self, "editable_mode", False):
            return  # an editable install reads weights/ from the checkout
        self._weights = _bundled.copy_bundled(ROOT / "weights", Path(self.build_lib) / "liteunet")
        if self._weights:
            self.announce(f"bundling {', '.join(str(p) for p in self._weights)}", level=2)
        else:
            tags = ", ".join(f"weights/{t}/model.safetensors" for t in _bundled.BUNDLED_TAGS)
            self.warn(f"no {tags}: building without bundled weights")

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        return super().get_outputs(include_bytecode) + [
            str(p) for p in getattr(self, "_weights", [])
        ]

    def get_source_files(self) -> list[str]:
        # sdist: the weights travel with the sources, so the wheel built from the sdist has them.
        weights = [p.relative_to(ROOT).as_posix() for p in _bundled.source_files(ROOT / "weights")]
        return super().get_source_files() + weights


setup(cmdclass={"build_py": BuildPyWithWeights})
