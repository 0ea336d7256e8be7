"""mkdocs hooks: the parts of the site that are generated from the code at build time.

- ``<!-- liteunet:zoo-table -->`` / ``<!-- liteunet:zoo-descriptions -->``: the model zoo, from
  ``weights/*/`` (:mod:`liteunet.zoo`), with latency from ``docs/benchmarks/latest.json``.
- ``<!-- liteunet:cli-reference -->``: every ``liteunet`` command's ``--help``, from the parser.
- ``<!-- liteunet:benchmarks -->``: ``docs/benchmarks/latest.md`` as ``liteunet bench`` wrote it.
- ``<!-- liteunet:throughput -->``: every ``docs/benchmarks/throughput_<device>.md`` that
  ``liteunet bench --throughput`` wrote, GPU first.
- ``<!-- liteunet:quickstart-figure -->``: the default weights run on the bundled sample image;
  the figure (``img/quickstart_overlay.png``, ``img/quickstart_map.png``) and its caption are
  made by that run.
- ``<!-- bench:NAME -->``: one figure of the latest benchmark (``docs/benchmarks/latest.json``),
  named as ``bench_figures()`` names it, so that a page quotes the run it shows, not an older
  one (the README's copies are checked against the same figures by ``tests/test_docs.py``).
- ``$$ ... $$`` lines become MathML (rendered by the browser, no script, works offline).

A marker left unreplaced is an error, so a page never ships with a hole in it.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
from pathlib import Path

from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "docs" / "benchmarks"
_MARKER = re.compile(r"<!-- liteunet:([a-z-]+) -->")
_BENCH = re.compile(r"<!-- bench:([a-z0-9_.@]+) -->")
_DISPLAY_MATH = re.compile(r"^\$\$(.+?)\$\$$", re.MULTILINE)
_figure: dict[str, object] = {}
CLI_COLUMNS = 86


def _zoo_table() -> str:
    from liteunet.zoo import render_zoo_table, zoo_entries

    return render_zoo_table(zoo_entries(ROOT / "weights", BENCHMARKS / "latest.json"))


def _zoo_descriptions() -> str:
    from liteunet.zoo import render_zoo_descriptions, zoo_entries

    return render_zoo_descriptions(zoo_entries(ROOT / "weights"))


def _sentence(text: str) -> str:
    """A sub-command's help as a sentence: the first letter raised, the help's own casing kept
    ("G MACs", "ONNX"), one full stop."""
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _cli_reference() -> str:
    from liteunet.cli import build_parser

    previous = os.environ.get("COLUMNS")
    # argparse wraps help to the terminal width: fix it at what the page's column holds in code
    # font (docs/css/extra.css sizes the column in rem, so this holds on large screens too).
    os.environ["COLUMNS"] = str(CLI_COLUMNS)
    try:
        parser = build_parser()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {a.dest: a.help for a in sub._choices_actions}
        parts = ["```text", parser.format_help().rstrip(), "```", ""]
        for name, command in sub.choices.items():
            parts += [f"## `liteunet {name}`", "", _sentence(helps.get(name) or ""), ""]
            parts += ["```text", command.format_help().rstrip(), "```", ""]
    finally:
        if previous is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(parts)


def _benchmarks() -> str:
    latest = BENCHMARKS / "latest.md"
    if latest.is_file():
        return latest.read_text()
    return (
        "No benchmark has been recorded in this checkout (`docs/benchmarks/latest.md` is absent); "
        "`liteunet bench` writes it, and the zoo's latency column reads `latest.json` beside it."
    )


def _throughput() -> str:
    # CUDA before CPU: the GPU figure is the one this section exists for.
    tables = sorted(BENCHMARKS.glob("throughput_*.md"), key=lambda p: (p.stem != "throughput_cuda", p.stem))
    if tables:
        return "\n".join(path.read_text() for path in tables)
    return (
        "No throughput run has been recorded in this checkout (`docs/benchmarks/throughput_*.md` are absent); "
        "`liteunet bench --throughput -o docs/benchmarks` writes them."
    )


def _quickstart_figure() -> str:
    result = _figure["result"]
    s = result.settings
    return (
        f"![The sample image with the {result.count} points found](img/quickstart_overlay.png){{ width=\"48%\" }} "
        f"![The location map](img/quickstart_map.png){{ width=\"48%\" }}\n\n"
        f"*`bbbc039_A02_s1.png` (BBBC039, CC0), {result.image_size[1]}x{result.image_size[0]}: "
        f"{result.count} cells found by `{s.get('model')}` with the settings stored with its weights "
        f"(threshold {s.get('threshold')}, min_distance {s.get('min_distance')}); right, the location map. "
        "Generated when this site was built.*"
    )


def bench_figures(path: Path = BENCHMARKS / "latest.json") -> dict[str, str]:
    """The figures of a ``liteunet bench`` run that the pages quote, formatted as quoted."""
    run = json.loads(path.read_text())
    rows = {r["form"]: r for r in run["rows"]}
    unet = rows["unet"]["median_ms"]
    figures = {
        "machine.cpu": run["machine"]["cpu"],
        "machine.threads": str(run["machine"]["threads"]),
        "slide.peak_rss_mb": f"{run['slide']['peak_rss_mb']:.0f}",
        "slide.seconds": f"{run['slide']['seconds']:.0f}",
        "localize.overhead_pct": f"{100 * run['localize']['overhead_fraction']:.1f}",
        "tiling.image": run["tiling"]["image"],
        "tiling.truth": str(run["tiling"]["truth"]),
    }
    for form in ("unet", "eager", "fused", "fused_cl", "compiled", "bf16", "bf16_compiled"):
        figures[f"{form}.ms"] = f"{rows[form]['median_ms']:.1f}"
        figures[f"{form}.vs_unet"] = f"{rows[form]['median_ms'] / unet:.3f}"
    for row in run["tiling"]["rows"]:
        for key in ("f1@5", "f1@10"):
            figures[f"tiling.{row['tile_size']}.{key}"] = f"{row[key]:.3f}"
        figures[f"tiling.{row['tile_size']}.cells"] = str(row["cells"])
    # torch.compile: its cost before the first tile (the "first call" of the compiled bf16 form),
    # and the number of 512x512 tiles it takes to win that back against eager bf16.
    compile_s = rows["bf16_compiled"]["first_call_s"]
    saved_s = (rows["bf16"]["median_ms"] - rows["bf16_compiled"]["median_ms"]) / 1000
    figures["compile.first_call_s"] = f"{compile_s:.0f}"
    figures["compile.break_even_tiles"] = f"{round(compile_s / saved_s, -2):.0f}"
    return figures


def _bench(text: str, where: str) -> str:
    if not _BENCH.search(text):
        return text
    figures = bench_figures()

    def replace(match: re.Match) -> str:
        if match.group(1) not in figures:
            raise PluginError(f"{where}: unknown benchmark figure <!-- bench:{match.group(1)} -->; known: {sorted(figures)}")
        return figures[match.group(1)]

    return _BENCH.sub(replace, text)


RENDERERS = {
    "zoo-table": _zoo_table,
    "zoo-descriptions": _zoo_descriptions,
    "cli-reference": _cli_reference,
    "benchmarks": _benchmarks,
    "throughput": _throughput,
    "quickstart-figure": _quickstart_figure,
}


def _png(image) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def on_files(files, config):
    """Localize the sample image with the default weights and add the two figures."""
    import liteunet
    from liteunet.data import read_image
    from liteunet.io_formats import render_heatmap, render_overlay
    from liteunet.samples import sample_path

    path = sample_path()
    result = liteunet.localize(path, model="lite_unet", device="cpu", return_map=True, progress=False)[0]
    _figure["result"] = result
    overlay = render_overlay(read_image(path), result)
    heatmap = render_heatmap(result.location_map, result.label_names)
    for name, image in (("img/quickstart_overlay.png", overlay), ("img/quickstart_map.png", heatmap)):
        files.append(File.generated(config, name, content=_png(image)))
    return files


def on_page_markdown(markdown, page, config, files):
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in RENDERERS:
            raise PluginError(f"{page.file.src_uri}: unknown generated section <!-- liteunet:{name} -->")
        return RENDERERS[name]()

    markdown = _MARKER.sub(replace, markdown)
    markdown = _bench(markdown, page.file.src_uri)
    if _DISPLAY_MATH.search(markdown):
        from latex2mathml.converter import convert

        markdown = _DISPLAY_MATH.sub(lambda m: convert(m.group(1).strip(), display="block"), markdown)
    return markdown
