"""Weights loading under faults: mismatched cached files, unreachable or stalling Hubs.

Same isolation as ``tests/test_hub.py`` (its fixtures): an empty Hub cache in ``tmp_path``, no
bundled weights unless a test copies them, and the fake Hub of ``tests/fake_hub.py`` on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import sys
import time
from pathlib import Path

import numpy as np
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
    _publish(fake_hub, folders["generalist"], tag="lite_unet.generalist")
    cached = _cached_weights("lite_unet.generalist")
    _mismatched(cached, num_classes=2)
    shutil.copytree(folders["generalist"], isolated / "bundled" / "lite_unet.generalist")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    model = liteunet.create_model("lite_unet", pretrained=True)
    assert _digest(model) == _digest(_seeded("lite_unet.generalist", 7))


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


def test_loading_from_the_cache_opens_no_connection(fake_hub, folders, monkeypatch):
    _publish(fake_hub, folders["multi"], tag="lite_unet.multi")
    _cached_weights()
    fake_hub.requests.clear()
    opened = []
    connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda self, addr: (opened.append(addr), connect(self, addr))[1]
    )
    model = liteunet.create_model("lite_unet.multi", pretrained=True)
    liteunet.localize(np.zeros((32, 32), np.uint8), model=model, device="cpu")
    liteunet.localize(np.zeros((32, 32), np.uint8), model="lite_unet.multi", device="cpu")
    assert fake_hub.requests == [] and opened == []


def test_an_unanswering_hub_is_waited_on_once_per_process(fake_hub, folders, monkeypatch):
    _publish(fake_hub, folders["crc"])
    fake_hub.fault("liteunet/lite_unet.crc", "*", ("slow", 10))  # connects, never answers
    monkeypatch.setattr(hf_constants, "HF_HUB_ETAG_TIMEOUT", 0.5)
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match=r"no answer within 0.5 s"):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    first = time.perf_counter() - start
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError, match="earlier in this process; not waited on"):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    assert first >= 0.5 and time.perf_counter() - start < 0.4
    requests = len(fake_hub.requests)
    with pytest.raises(PretrainedWeightsError):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    assert len(fake_hub.requests) == requests


@pytest.mark.parametrize("fault", [("stall", 30), ("drip", 0.3)])
def test_a_download_has_a_total_deadline_that_the_message_states(
    fake_hub, folders, monkeypatch, fault
):
    _publish(fake_hub, folders["crc"])
    fake_hub.fault("liteunet/lite_unet.crc", "model.safetensors", fault)
    monkeypatch.setattr(hf_constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)  # each read: a drip is quicker
    monkeypatch.setenv("LITEUNET_HUB_DEADLINE", "2")
    start = time.perf_counter()
    with pytest.raises(
        PretrainedWeightsError, match=r"did not finish within 2 s \(LITEUNET_HUB_DEADLINE"
    ):
        liteunet.create_model("lite_unet.crc", pretrained=True)
    assert time.perf_counter() - start < 3.5
