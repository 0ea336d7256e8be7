"""The documentation site: built with mkdocs in strict mode, its generated parts checked, and
its pages opened in a headless Chromium (the zoo table and a figure must render).

The build runs ``mkdocs build --strict`` in a subprocess, as a reader or CI would. The browser
test uses Playwright with a system Chromium (Playwright's own browser download is not needed):
``$LITEUNET_CHROMIUM``, else ``chromium-headless-shell``, ``chromium``, ``chromium-browser`` or
``google-chrome`` on the PATH, else a browser installed by ``playwright install chromium``. It
skips, saying so, only when no browser can be launched.
"""

from __future__ import annotations

import functools
import html as html_lib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mkdocs", reason="documentation tests need the dev extra: pip install -e '.[dev]'")
pytest.importorskip("material", reason="documentation tests need mkdocs-material (dev extra)")
pytest.importorskip("mkdocstrings", reason="documentation tests need mkdocstrings[python] (dev extra)")

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_MKDOCS_2_WARNING="1")
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = _mkdocs_build(ROOT / "mkdocs.yml", out)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def _html(site: Path, page: str) -> str:
    return (site / f"{page}.html").read_text()


@pytest.mark.slow
def test_every_page_of_docs_is_built_and_in_the_navigation(site):
    import yaml  # mkdocs' own dependency

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    nav = {next(iter(item.values())) for item in config["nav"]}
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages == nav, f"pages not in the nav: {sorted(pages - nav)}; nav entries without a page: {sorted(nav - pages)}"
    for page in pages:
        html = _html(site, page[:-3])
        assert "<!-- liteunet:" not in html, f"{page}: a generated section was left unfilled"


@pytest.mark.slow
def test_zoo_table_is_generated_from_every_weights_folder(site):
    html = _html(site, "zoo")
    folders = sorted(f.name for f in (ROOT / "weights").iterdir() if (f / "config.json").is_file())
    assert folders
    for tag in folders:
        config = json.loads((ROOT / "weights" / tag / "config.json").read_text())
        row = re.search(rf"<tr>\s*<td><code>{re.escape(tag)}</code>.*?</tr>", html, re.DOTALL)
        assert row, f"no zoo row for {tag}"
        assert f"{config['training']['params'] / 1e6:.2f} M" in row.group(0)
        assert f"{config['training']['macs_512'] / 1e9:.2f}" in row.group(0)


@pytest.mark.slow
def test_cli_reference_is_generated_from_the_parser(site):
    from liteunet.cli import build_parser

    html = _html(site, "cli")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert commands
    helps = {a.dest: a.help for a in next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")._choices_actions}
    for name, command in commands.items():
        assert f"liteunet {name}</code>" in html, f"no section for liteunet {name}"
        # the help's own casing is kept ("G MACs", not "g macs"), only its first letter raised
        sentence = helps[name][:1].upper() + helps[name][1:]
        assert html_lib.escape(sentence, quote=False) in html, f"liteunet {name}: {sentence!r} is not on the page"
        for action in command._actions:
            for flag in action.option_strings:
                assert flag in html, f"liteunet {name} {flag} is missing from the CLI reference"


@pytest.mark.slow
def test_api_reference_and_equations_are_rendered(site):
    api = _html(site, "api")
    for name in ("localize", "LocalizationResult", "layers.GraphCorrelationAttention", "train.TrainConfig", "data.load_folder"):
        assert f'id="liteunet.{name}"' in api, f"liteunet.{name} is missing from the API reference"
    # The docstrings' "Example:" doctests are highlighted code (docs/_griffe_examples.py), not prose.
    assert api.count('<span class="gp">&gt;&gt;&gt; </span>') > 20
    layers = _html(site, "layers")
    assert layers.count('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">') >= 3
    assert "$$" not in layers


_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`")  # a Sphinx role, :class:`X` or :py:func:`X`


@pytest.mark.slow
def test_no_page_shows_a_literal_sphinx_role(site):
    """Markdown does not render :class:`X` or :math:`...`; docs/_griffe_examples.py converts them."""
    shown = {}
    for page in sorted(site.glob("*.html")):
        text = re.sub(r"<[^>]+>", "", page.read_text())
        if found := _ROLE.findall(text):
            shown[page.name] = len(found)
    assert not shown, f"literal Sphinx roles in the built pages: {shown}"
    api = _html(site, "api")
    assert '<math display="inline">' in api  # :math: became MathML


def test_every_role_in_the_docstrings_is_converted():
    """Each role the package's docstrings use (in any module, on the API page or not yet) has a
    conversion: a new kind of role fails here, not on the site."""
    sys.path.insert(0, str(DOCS))
    try:
        from _griffe_examples import markdown_docstring
    finally:
        sys.path.remove(str(DOCS))
    left = {}
    for path in sorted((ROOT / "liteunet").rglob("*.py")):
        if found := _ROLE.findall(markdown_docstring(path.read_text())):
            left[str(path.relative_to(ROOT))] = found
    assert not left, f"roles docs/_griffe_examples.py does not convert: {left}"
    converted = markdown_docstring("see :class:`~liteunet.LocalizationResult`, :func:`liteunet.localize`, :math:`C_{in}`")
    assert converted.startswith("see `LocalizationResult`, `liteunet.localize`, <math display=\"inline\">")


@pytest.mark.slow
def test_quickstart_figure_is_a_real_run(site):
    from PIL import Image

    overlay = Image.open(site / "img" / "quickstart_overlay.png")
    assert overlay.size == (696, 520)  # the bundled sample's size
    html = _html(site, "quickstart")
    count = int(re.search(r"(\d+) cells found by", html).group(1))
    import liteunet
    from liteunet.samples import sample_path

    assert count == liteunet.localize(sample_path(), device="cpu", progress=False)[0].count


@pytest.mark.parametrize("page, message", [
    ("[a link](missing.md)", "missing.md"),
    ("[an anchor](index.md#nowhere)", "nowhere"),
])
def test_strict_settings_fail_the_build_on_broken_links(tmp_path, page, message):
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n")
    (docs / "page.md").write_text(f"# Page\n\n{page}\n")
    small = {
        "site_name": "check", "docs_dir": str(docs), "strict": config["strict"],
        "validation": config["validation"], "nav": ["index.md", "page.md"],
    }
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(small))
    proc = _mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert proc.returncode != 0 and message in proc.stdout + proc.stderr


# --- one source for the benchmark figures -------------------------------------------------------


def _bench_figures() -> dict[str, str]:
    sys.path.insert(0, str(DOCS))
    try:
        from _hooks import bench_figures
    finally:
        sys.path.remove(str(DOCS))
    return bench_figures()


def test_readme_quotes_the_latest_benchmark():
    """The README (read on GitHub, not built) copies docs/benchmarks/latest.md and quotes figures
    of latest.json; they must be those of the latest run, as the site's pages are by construction
    (<!-- bench:NAME --> markers, docs/_hooks.py)."""
    if not (DOCS / "benchmarks" / "latest.json").is_file():
        pytest.skip("no benchmark recorded in this checkout")
    readme = (ROOT / "README.md").read_text()
    assert (DOCS / "benchmarks" / "latest.md").read_text().strip() in readme, (
        "README.md's benchmark section is not docs/benchmarks/latest.md: paste the new run's table"
    )
    f = _bench_figures()
    text = " ".join(readme.split())
    for quote in (
        f"{f['bf16_compiled.ms']} ms, {f['bf16_compiled.vs_unet']}x the U-Net baseline",
        f"fastest fp32 form (compiled): {f['compiled.vs_unet']}x",
        f"({f['eager.ms']} / {f['fused_cl.ms']})",
        f"({f['eager.ms']} / {f['fused.ms']})",
        f"`localize()` adds {f['localize.overhead_pct']}% to the model time",
        f"a 10000x10000 slide peaks at {f['slide.peak_rss_mb']} MB RSS",
        f"costs {f['compile.first_call_s']} s before the first tile",
        f"fewer than about {f['compile.break_even_tiles']} tiles",
        f"({f['compile.first_call_s']} s / ({f['bf16.ms']} - {f['bf16_compiled.ms']}) ms)",
    ):
        assert quote in text, f"README.md should say {quote!r} (docs/benchmarks/latest.json)"
    assert "few minutes on 2 CPU cores" not in text  # the suite took 8.5-11.5 min on 2 cores


def test_no_page_or_docstring_quotes_tiling_f1_by_hand():
    """The tiling F1 comes from the benchmark in one place (the localize page's markers); pages,
    docstrings and the README do not carry their own copies, which went stale before."""
    if not (DOCS / "benchmarks" / "latest.json").is_file():
        pytest.skip("no benchmark recorded in this checkout")
    f = _bench_figures()
    localize = (DOCS / "localize.md").read_text()
    assert "<!-- bench:tiling.512.f1@5 -->" in localize and "<!-- bench:compile.first_call_s -->" in localize
    stale = re.compile(r"F1@5 0\.\d{3}\s*(?:/|and)\s*F1@10 0\.\d{3}")
    sources = [ROOT / "README.md", *DOCS.glob("*.md"), *(ROOT / "liteunet").rglob("*.py")]
    for path in sources:
        for match in stale.finditer(path.read_text()):
            raise AssertionError(f"{path.relative_to(ROOT)} quotes {match.group(0)!r} by hand: use <!-- bench:... -->")
    assert f["tiling.512.f1@5"] in (DOCS / "benchmarks" / "latest.md").read_text()


@pytest.mark.slow
def test_pages_show_the_latest_benchmark_figures(site):
    f = _bench_figures()
    localize = " ".join(re.sub(r"<[^>]+>", "", _html(site, "localize")).split())
    assert f"512/128 gave F1@5 {f['tiling.512.f1@5']} / F1@10 {f['tiling.512.f1@10']}" in localize
    assert f"({f['compile.first_call_s']} s on {f['machine.threads']} CPU cores" in localize
    export = " ".join(re.sub(r"<[^>]+>", "", _html(site, "export")).split())
    assert f"compiling takes {f['compile.first_call_s']} s before the first tile" in export
    assert f"{f['bf16_compiled.ms']} against {f['bf16.ms']} ms" in export
    for page in sorted(site.glob("*.html")):
        assert "<!-- bench:" not in page.read_text(), f"{page.name}: a benchmark figure was left unfilled"


# --- the headless browser ---------------------------------------------------------------------


def _launch(playwright):
    candidates = [os.environ.get("LITEUNET_CHROMIUM")] + [shutil.which(b) for b in BROWSERS]
    errors = []
    for path in [c for c in candidates if c] + [None]:  # None: Playwright's own download
        try:
            return playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        except Exception as err:  # noqa: BLE001 - any launch failure means: try the next one
            errors.append(f"{path or 'playwright chromium'}: {str(err).splitlines()[0]}")
    pytest.skip(
        "no headless Chromium could be launched (install one, e.g. `apt-get install "
        "chromium-headless-shell`, or set LITEUNET_CHROMIUM): " + "; ".join(errors)
    )


@pytest.fixture(scope="module")
def served(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def _not_blank(png: bytes) -> float:
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=np.float32)
    return float(pixels.std())


@pytest.mark.slow
def test_zoo_table_and_figure_render_in_a_browser(served, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (dev extra)")
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": 1300, "height": 1000})
            failed = []
            page.on("requestfailed", lambda r: failed.append(r.url))

            page.goto(f"{served}/zoo.html")
            table = page.locator("article table").first
            tags = sorted(f.name for f in (ROOT / "weights").iterdir() if (f / "config.json").is_file())
            rows = table.locator("tbody tr")
            assert rows.count() == len(tags)
            assert [rows.nth(i).locator("td").first.locator("code").inner_text() for i in range(len(tags))] == tags
            box = table.bounding_box()
            assert box and box["width"] > 600 and box["height"] > 100
            shot = table.screenshot(path=str(tmp_path / "zoo_table.png"))
            assert _not_blank(shot) > 10
            page.screenshot(path=str(tmp_path / "zoo.png"), full_page=True)

            page.goto(f"{served}/quickstart.html")
            figure = page.locator("img[src$='quickstart_overlay.png']")
            figure.wait_for()
            natural = page.evaluate(
                "img => [img.complete, img.naturalWidth, img.naturalHeight]", figure.element_handle()
            )
            assert natural == [True, 696, 520], natural
            shot = figure.screenshot(path=str(tmp_path / "quickstart_figure.png"))
            assert _not_blank(shot) > 10

            page.goto(f"{served}/layers.html")
            math = page.locator("math").first
            assert math.bounding_box()["height"] > 10  # MathML laid out by the browser
            assert not failed, f"requests that failed: {failed}"
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.parametrize("width", [1300, 1920])
def test_cli_help_and_api_signatures_fit_the_column(served, width):
    """Nothing of the CLI help or an API signature is hidden past the column's edge (the help is
    wrapped to CLI_COLUMNS by docs/_hooks.py, signatures wrap by docs/css/extra.css)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (dev extra)")
    overflowing = """sel => Array.from(document.querySelectorAll(sel))
        .filter(e => e.scrollWidth > e.clientWidth + 1)
        .map(e => e.innerText.split('\\n')[0].slice(0, 60))"""
    with sync_api.sync_playwright() as p:
        browser = _launch(p)
        try:
            page = browser.new_page(viewport={"width": width, "height": 1000})
            page.goto(f"{served}/cli.html")
            assert page.locator("article pre code").count() > 8
            assert page.evaluate(overflowing, "article pre code") == []
            page.goto(f"{served}/api.html")
            assert page.locator("article .doc-signature code").count() > 20
            assert page.evaluate(overflowing, "article .doc-signature code") == []
        finally:
            browser.close()


# --- the FAQ quotes the real messages ----------------------------------------------------------


def _faq_errors():
    import liteunet
    from liteunet.data import load_folder, resolve_root

    tiny = functools.partial(liteunet.create_model, "lite_unet", widths=(8, 8, 16, 16, 16))
    image = np.zeros((64, 64, 3), np.uint8)

    def folder_without_csv(tmp):
        (tmp / "a.png").write_bytes(liteunet.samples.sample_path().read_bytes())
        load_folder(tmp)

    return [
        ("Could not load pretrained weights for 'lite_unet.crc'", lambda tmp: liteunet.create_model("lite_unet.crc", pretrained=True, cache_dir=str(tmp), revision="v9")),
        ("unknown model 'lite_unett'; liteunet models: ", lambda tmp: liteunet.create_model("lite_unett")),
        ("data set folder not found: looked in ", lambda tmp: resolve_root(tmp / "nowhere")),
        ("have no points file NAME.csv beside them or in points/", folder_without_csv),
        ("must be multiples of 16, the model's pooling grid", lambda tmp: liteunet.localize(image, tiny(), tile_size=100, progress=False)),
        ("cannot convert an image with 2 channel(s) to in_chans=3", lambda tmp: liteunet.localize(image[..., :2], tiny(), progress=False)),
        ("more than max_pixels", lambda tmp: liteunet.localize(image, tiny(), max_pixels=100, progress=False)),
    ]


@pytest.mark.parametrize("index", range(7))
def test_faq_quotes_the_message_liteunet_prints(index, tmp_path, monkeypatch):
    import liteunet.samples  # noqa: F401

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fragment, trigger = _faq_errors()[index]
    assert fragment in (DOCS / "faq.md").read_text(), f"the FAQ no longer quotes {fragment!r}"
    with pytest.raises(Exception) as err:
        trigger(tmp_path)
    assert fragment in str(err.value), f"liteunet now says {str(err.value)[:300]!r}, the FAQ quotes {fragment!r}"


def test_faq_quotes_the_install_hints():
    from liteunet.data.annotations import _import_h5py  # noqa: F401

    faq = (DOCS / "faq.md").read_text()
    sources = (ROOT / "liteunet" / "slides.py").read_text() + (ROOT / "liteunet" / "data" / "annotations.py").read_text()
    for fragment in ("reading TIFF slides region by region needs tifffile", "reading BCData .h5 annotations needs h5py"):
        assert fragment in faq and fragment in sources
