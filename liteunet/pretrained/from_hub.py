"""Fetching weights from the Hugging Face Hub or its cache, with one-line reasons for failures.

A failure here is not fatal: it becomes :class:`Unavailable`, and the resolution order
(:mod:`liteunet.pretrained.resolve`) goes on to the next source.

Waits are bounded. The first request has no retries (``HF_HUB_ETAG_TIMEOUT``); a whole fetch
(``config.json`` and the weights) has a total deadline, :data:`DEADLINE_ENV` (default
:data:`DEFAULT_DEADLINE` seconds), however slowly the server sends; and once the Hub has made a
process wait without answering, it is not waited on again in that process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from huggingface_hub import constants as hf_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.utils import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .._version import __version__
from .files import CONFIG_NAME, PretrainedWeightsError, ResolvedWeights, check_architecture, read_config, read_state_dict

__all__ = [
    "DEADLINE_ENV",
    "DEFAULT_DEADLINE",
    "LIBRARY",
    "Unavailable",
    "download_deadline",
    "forget_waits",
    "from_hub",
    "split_repo_revision",
]

#: Environment variable: seconds a whole fetch from the Hub may take, all requests together.
DEADLINE_ENV = "LITEUNET_HUB_DEADLINE"
DEFAULT_DEADLINE = 60.0
# Hub endpoints that made this process wait without answering, with the reason: not tried again.
_WAITED: dict[str, str] = {}
_T = TypeVar("_T")

#: Sent with every Hub request (huggingface_hub's user agent fields).
LIBRARY = dict(library_name="liteunet", library_version=__version__)


def download_deadline() -> float:
    """Seconds a whole fetch may take: ``LITEUNET_HUB_DEADLINE``, default 60."""
    text = os.environ.get(DEADLINE_ENV, "").strip()
    try:
        value = float(text) if text else DEFAULT_DEADLINE
    except ValueError:
        raise PretrainedWeightsError(
            f"{DEADLINE_ENV}={text!r}: expected a number of seconds"
        ) from None
    return value if value > 0 else DEFAULT_DEADLINE


def forget_waits() -> None:
    """Try Hub endpoints that made this process wait again (tests; a network that came back)."""
    _WAITED.clear()


class _DeadlinePassed(TimeoutError):
    pass


def _within_deadline(fn: Callable[[], _T], seconds: float) -> _T:
    """``fn()``, or _DeadlinePassed after ``seconds``; the late call is left to end by itself.

    huggingface_hub's timeouts bound each read, not a whole download: a server that sends a byte
    now and then, or retries, can make one take any time.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as err:  # handed to the caller
            box["error"] = err

    worker = threading.Thread(target=target, name="liteunet-hub-fetch", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise _DeadlinePassed(seconds)
    if "error" in box:
        raise box["error"]
    return box["value"]


def _is_wait(err: BaseException) -> bool:
    return isinstance(err, TimeoutError) or "Timeout" in type(err).__name__


class Unavailable(Exception):
    """One source of the resolution order has nothing usable; the message says why."""

    def __init__(self, reason: str, corrupt: bool = False) -> None:
        super().__init__(reason)
        self.corrupt = corrupt


def split_repo_revision(hf_hub_id: str) -> tuple[str, str | None]:
    """``"ORG/NAME@REV"`` -> ``("ORG/NAME", "REV")``; no ``@``: revision ``None`` (timm's form)."""
    repo_id, _, revision = hf_hub_id.partition("@")
    return repo_id, revision or None


def _hub_reason(err: BaseException, repo_id: str, revision: str | None, filename: str) -> str:
    """One line saying why the Hub (or its cache) did not give ``filename``."""
    rev = revision or "main"
    name = type(err).__name__
    if isinstance(err, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    if isinstance(err, LocalEntryNotFoundError):
        return f"{repo_id}@{rev}/{filename} is not cached"
    if isinstance(err, GatedRepoError):
        return f"{repo_id} is gated: accept its terms on the Hub, log in (hf auth login / HF_TOKEN)"
    if isinstance(err, RepositoryNotFoundError):
        return (
            f"repository {repo_id} not found (if it is private, log in: hf auth login, or HF_TOKEN)"
        )
    if isinstance(err, RevisionNotFoundError):
        return f"revision '{rev}' not found in {repo_id}"
    if isinstance(err, EntryNotFoundError):
        return f"{repo_id}@{rev} has no {filename}"
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return (
            f"HTTP {status} for {repo_id}@{rev}/{filename}"
            if status
            else f"{name}: {_first_line(err)}"
        )
    if isinstance(err, _DeadlinePassed):
        return (
            f"the download did not finish within {err.args[0]:g} s ({DEADLINE_ENV}, the total "
            "for config.json and the weights)"
        )
    if "Timeout" in name or isinstance(err, TimeoutError):
        return (
            f"no answer within {hf_constants.HF_HUB_ETAG_TIMEOUT} s (HF_HUB_ETAG_TIMEOUT) / "
            f"{hf_constants.HF_HUB_DOWNLOAD_TIMEOUT} s (HF_HUB_DOWNLOAD_TIMEOUT)"
        )
    if "Connect" in name or "Network" in name or isinstance(err, ConnectionError):
        return f"cannot connect ({name}: {_first_line(err)})"
    return f"{name}: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _hub_file(
    repo_id: str, revision: str | None, filename: str, cache_dir: Any, local_only: bool, force: bool
) -> Path:
    if not local_only:
        # One HEAD without retries first: hf_hub_download retries a failing Hub for minutes when
        # nothing is cached, and offline-first means falling through to the next source at once.
        get_hf_file_metadata(
            hf_hub_url(repo_id, filename, revision=revision),
            timeout=hf_constants.HF_HUB_ETAG_TIMEOUT,
            **LIBRARY,
        )
    return Path(
        hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=local_only,
            force_download=force,
            **LIBRARY,
        )
    )


def from_hub(
    repo_id: str,
    revision: str | None,
    filename: str,
    expected: str | None,
    cache_dir: Any,
    need_weights: bool,
    local_only: bool,
    force: bool = False,
) -> ResolvedWeights:
    """Fetch config.json, check it, then fetch and read the weights; failures are Unavailable.

    Online (``local_only=False``), the fetch has a total deadline (:func:`download_deadline`),
    and a Hub that made this process wait before is not tried again.
    """
    source = "hub-cache" if local_only else "hub"
    endpoint = hf_constants.ENDPOINT
    if not local_only and endpoint in _WAITED:
        raise Unavailable(f"{_WAITED[endpoint]} earlier in this process; not waited on again")
    current = [CONFIG_NAME]

    def fetch() -> tuple[Path, dict[str, Any], Path | None]:
        config_file = _hub_file(repo_id, revision, CONFIG_NAME, cache_dir, local_only, force)
        config = read_config(config_file)
        check_architecture(config, config_file, None, expected)  # before downloading the weights
        if not need_weights:
            return config_file, config, None
        current[0] = filename
        weights = _hub_file(repo_id, revision, filename, cache_dir, local_only, force)
        return config_file, config, weights

    try:
        config_file, config, weights = (
            fetch() if local_only else _within_deadline(fetch, download_deadline())
        )
    except PretrainedWeightsError as err:
        raise Unavailable(str(err), corrupt=True) from err
    except Exception as err:  # every network or cache failure becomes one line
        reason = _hub_reason(err, repo_id, revision, current[0])
        if not local_only and _is_wait(err):
            _WAITED[endpoint] = reason
        raise Unavailable(reason) from err
    if weights is None:
        return ResolvedWeights(source, None, config_file, config)
    try:
        return ResolvedWeights(source, weights, config_file, config, read_state_dict(weights))
    except PretrainedWeightsError as err:
        raise Unavailable(str(err), corrupt=True) from err
