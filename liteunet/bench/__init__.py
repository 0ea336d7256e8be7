"""Benchmarks, side by side in one run: ``liteunet bench`` (latency) and ``--throughput``.

- :mod:`~liteunet.bench.latency`: every inference form of one image, Lite-UNet against U-Net;
- :mod:`~liteunet.bench.throughput`: images per second in batches;
- :mod:`~liteunet.bench.localize_cost`: what ``localize()`` adds around the model;
- :mod:`~liteunet.bench.report`: the Markdown tables the docs include.
"""

from .latency import FORMS, BenchRow, matmul_peak, peak_rss_mb, run_benchmark
from .report import throughput_markdown, to_markdown
from .throughput import THROUGHPUT_FORMS, ThroughputRow, run_throughput

__all__ = [
    "FORMS",
    "THROUGHPUT_FORMS",
    "BenchRow",
    "ThroughputRow",
    "matmul_peak",
    "peak_rss_mb",
    "run_benchmark",
    "run_throughput",
    "throughput_markdown",
    "to_markdown",
]
