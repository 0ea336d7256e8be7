"""Weights loading under faults: mismatched cached files, unreachable or stalling Hubs.

Same isolation as ``tests/test_hub.py`` (its fixtures): an empty Hub cache in ``tmp_path``, no
bundled weights unless a test copies them, and the fake Hub of ``tests/fake_hub.py`` on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
from huggingface_hub import constants as hf_constants

import liteunet
from liteunet.hub import PretrainedWeightsError

sys.path.insert(0, str(Path(__file__).parent))
from test_hub import _digest, _publish, _seeded, fake_hub, folders, isolated  # noqa: F401,E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cached_weights(tag: str = "lite_unet.multi") -> Path:
    return Path(liteunet.create_model(tag, pretrained=True).pretrained_cfg["file"])


def _mismatched(cached: Path, **model_kwargs) -> None:
    """Replace the cached blob with a well-formed file for another head or other widths."""
    other = liteunet.create_model("lite_unet", **model_kwargs)
    blob = cached.resolve()
    blob.unlink()
    safetensors.torch.save_file(other.state_dict(), str(blob))


@pytest.mark.parametrize("kwargs", [dict(num_classes=2), dict(widths=(8, 8, 16, 16, 16))])
def test_mismatched_cached_file_is_downloaded_again(fake_hub, folders, kwargs):
    _publish(fake_hub, folders["multi"], tag="lite_unet.multi")
    cached = _cached_weights()
    _mismatched(cached, **kwargs)
    model = liteunet.create_model("lite_unet.multi", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.multi", 4))
    assert _digest(safetensors.torch.load_file(cached)) == _digest(model)  # the cache is mended


def test_mismatched_cached_file_falls_back_to_the_bundled_copy(
    fake_hub, folders, isolated, monkeypatch
):
    _publish(fake_hub, folders["multi"], tag="lite_unet.multi")
    cached = _cached_weights()
    _mismatched(cached, num_classes=2)
    shutil.copytree(folders["multi"], isolated / "bundled" / "lite_unet.multi")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    model = liteunet.create_model("lite_unet", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.multi", 4))


def test_mismatched_cached_file_is_named_for_deletion(fake_hub, folders, monkeypatch):
    _publish(fake_hub, folders["multi"], tag="lite_unet.multi")
    cached = _cached_weights()
    _mismatched(cached, num_classes=2)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(PretrainedWeightsError) as info:
        liteunet.create_model("lite_unet.multi", pretrained=True)
    msg = str(info.value)
    assert f"delete the cached file {cached}" in msg, msg
    assert "shape mismatch" in msg and "pass the matching arguments" not in msg.split("To fix")[0]
