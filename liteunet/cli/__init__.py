"""The ``liteunet`` command line (``liteunet --help``); see :mod:`liteunet.cli.main`."""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
