"""Bad inputs found by an adversarial pass: page stacks, link loops, huge or truncated files,
scores above 1, and pickles given to ``timm.create_model(checkpoint_path=...)``."""

from __future__ import annotations

import os
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

import liteunet
from liteunet import localize
from liteunet.data.io import read_image
from liteunet.hub import PretrainedWeightsError
from liteunet.localization.inputs import expand_inputs, open_input

sys.path.insert(0, str(Path(__file__).parent))
from test_localize import Blur, cells_image  # noqa: E402

tifffile = pytest.importorskip("tifffile")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _opened(item_path: Path) -> np.ndarray:
    (item,) = expand_inputs(str(item_path))
    src = open_input(item)
    try:
        return src.read_region(0, src.shape[0], 0, src.shape[1])
    finally:
        src.close()


def test_page_channels_are_read_as_channels(tmp_path):
    stack = np.random.default_rng(0).integers(0, 255, (3, 40, 50), dtype=np.uint8)
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")  # three pages, one per channel
    assert len(tifffile.TiffFile(path).pages) == 3
    np.testing.assert_array_equal(_opened(path), np.moveaxis(stack, 0, -1))
    named = tmp_path / "named.tif"
    tifffile.imwrite(named, stack[:2], imagej=True, metadata={"axes": "CYX"})
    assert _opened(named).shape == (40, 50, 2)


@pytest.mark.parametrize("axes", ["ZYX", None])
def test_stacks_are_refused_with_how_to_pass_them(tmp_path, axes):
    stack = np.zeros((5, 40, 50), np.uint8)
    path = tmp_path / "z.tif"
    if axes:
        tifffile.imwrite(path, stack, imagej=True, metadata={"axes": axes})
    else:
        tifffile.imwrite(path, stack, photometric="minisblack")
    (result,) = localize(str(path), Blur(), progress=False, on_error="skip")
    assert not result.ok and "stack of 5 pages" in result.error
    assert "key=K" in result.error and "max(axis=0)" in result.error


def test_dropped_frames_are_warned_about(tmp_path):
    frames = [Image.fromarray(np.full((20, 20), 40 * i, np.uint8)) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    with pytest.warns(UserWarning, match="holds 3 frames/pages; only the first is read"):
        read_image(path)


def _link_loop(tmp_path: Path, links: int) -> Path:
    root = tmp_path / "L"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "sub" / "b.png")
    for k in range(links):
        (root / f"self{k}").symlink_to(".")
    return root


def test_recursive_globs_take_each_real_file_once(tmp_path):
    root = _link_loop(tmp_path, 1)
    with pytest.warns(UserWarning, match="skipped 1 linked folder"):
        items = expand_inputs(f"{root}/**/*.png")
    assert [Path(i.name).relative_to(root).as_posix() for i in items] == ["a.png", "sub/b.png"]


def test_recursive_globs_end_with_two_link_loops(tmp_path):
    root = _link_loop(tmp_path, 2)
    found: list = []
    worker = threading.Thread(
        target=lambda: found.append(_quiet(expand_inputs, f"{root}/**/*.png")), daemon=True
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "glob expansion did not end"
    assert len(found[0]) == 2


def _quiet(fn, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args)


def test_images_over_pillows_limit_say_how_to_go_on(tmp_path, monkeypatch):
    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 100x100 > 2x the limit
    (result,) = localize(str(path), Blur(), progress=False, on_error="skip")
    assert not result.ok and "decompression-bomb limit" in result.error
    assert "tiled TIFF" in result.error and "PIL.Image.MAX_IMAGE_PIXELS = None" in result.error


def _open_fds(path: Path) -> int:
    fds = Path("/proc/self/fd")
    if not fds.is_dir():
        pytest.skip("needs /proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd) == str(path.resolve()))


def test_truncated_png_is_closed(tmp_path):
    path = tmp_path / "cut.png"
    Image.fromarray(cells_image(64, 64, np.array([[20.0, 20.0]]))).save(path)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_image(path)
    assert _open_fds(path) == 0


def test_scores_are_at_most_one():
    img = cells_image(48, 48, np.array([[20.0, 20.0], [30.0, 34.0]])).astype(np.float32) / 255
    (result,) = localize(img * 3, Blur(), progress=False, normalize="none", threshold=0.3)
    assert len(result) == 2 and result.scores.max() <= 1.0


def test_timm_checkpoint_path_refuses_pickles_with_the_librarys_error(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.makedirs, (str(marker),))

    evil = tmp_path / "evil.pth"
    torch.save({"head.weight": Evil()}, evil)
    with pytest.raises(PretrainedWeightsError, match="refused to unpickle it"):
        timm.create_model("lite_unet", widths=(8, 8, 16, 16, 16), checkpoint_path=str(evil))
    assert not marker.exists()
    good = tmp_path / "good.pth"
    model = liteunet.create_model("lite_unet", widths=(8, 8, 16, 16, 16))
    torch.save(model.state_dict(), good)
    again = timm.create_model("lite_unet", widths=(8, 8, 16, 16, 16), checkpoint_path=str(good))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
