"""Publishing a weights folder to the Hugging Face Hub: validate it, then upload it.

``liteunet push FOLDER --repo-id ORG/NAME [--dry-run]`` is the command line for this.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import validate_repo_id

from ._version import __version__
from .models import is_model, load_model
from .pretrained.files import CARD_NAME, CONFIG_NAME, PICKLE_SUFFIXES, WEIGHTS_NAME, PretrainedWeightsError, read_config, short_list
from .pretrained.from_hub import LIBRARY
from .pretrained.settings import DEFAULT_LOCALIZATION, checked_settings

__all__ = ["UploadPlan", "push_weights_folder", "validate_weights_folder"]


@dataclasses.dataclass(frozen=True)
class UploadPlan:
    """What :func:`push_weights_folder` uploads: ``files`` (relative to ``folder``), and notes."""

    folder: Path
    files: list[str]
    notes: list[str]
    summary: str


def validate_weights_folder(folder: str | Path) -> UploadPlan:
    """Check that a weights folder is ready to publish; return what would be uploaded.

    Checks: ``config.json`` is timm's format naming a liteunet architecture, with valid
    ``localization`` settings; ``README.md`` is a non-empty card; ``model.safetensors`` loads
    into that architecture (through the same path users load it by); no pickle files.

    Args:
        folder: the weights folder, e.g. ``weights/lite_unet.multi``.

    Returns:
        The plan: files to upload (relative paths, hidden files skipped), notes, a summary line.

    Raises:
        PretrainedWeightsError: listing every problem found.

    Example:
        >>> validate_weights_folder("weights/lite_unet.multi").files  # doctest: +SKIP
        ['README.md', 'config.json', 'model.safetensors']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise PretrainedWeightsError(f"{folder} is not a folder")
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file()
        and not any(
            part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts
        )
    )
    problems: list[str] = []
    notes: list[str] = []
    arch = None
    pickles = [f for f in files if Path(f).suffix in PICKLE_SUFFIXES]
    if pickles:
        problems.append(
            f"pickle files are never published (only safetensors): remove {short_list(pickles)}"
        )
    if CONFIG_NAME not in files:
        problems.append(
            f"no {CONFIG_NAME} (write the folder with liteunet.train.save_weights or timm's "
            "save_for_hf)"
        )
    else:
        try:
            config = read_config(folder / CONFIG_NAME)
            arch = config.get("architecture")
            if not arch or not is_model(arch):
                problems.append(
                    f"{CONFIG_NAME}: 'architecture' must name a liteunet model, got {arch!r}"
                )
                arch = None
            if "localization" in config:
                checked_settings(config, folder / CONFIG_NAME)
            else:
                notes.append(
                    f"{CONFIG_NAME} stores no 'localization' settings: users get "
                    f"{DEFAULT_LOCALIZATION}"
                )
        except PretrainedWeightsError as err:
            problems.append(str(err))
    if (
        CARD_NAME not in files
        or not (folder / CARD_NAME).read_text(encoding="utf-8", errors="replace").strip()
    ):
        problems.append(f"no {CARD_NAME} model card (liteunet.model_card.write_model_card)")
    elif not (folder / CARD_NAME).read_text(encoding="utf-8", errors="replace").startswith("---"):
        notes.append(
            f"{CARD_NAME} has no metadata header (---), so the Hub shows no license or library"
        )
    summary = ""
    if WEIGHTS_NAME not in files:
        problems.append(f"no {WEIGHTS_NAME}")
    elif arch:
        try:
            model = load_model(folder.resolve())
            params = sum(p.numel() for p in model.parameters())
            summary = f"{WEIGHTS_NAME} loads into {arch} ({params / 1e6:.2f} M parameters)"
        except Exception as err:  # any failure to load is a problem to report
            problems.append(f"{WEIGHTS_NAME} does not load into {arch}: {err}")
    if problems:
        raise PretrainedWeightsError(
            f"{folder} is not ready to publish:\n" + "\n".join(f"  - {p}" for p in problems)
        )
    return UploadPlan(folder, files, notes, summary)


def push_weights_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    tag: str | None = None,
    commit_message: str | None = None,
    private: bool = False,
    create_pr: bool = False,
    token: str | None = None,
    dry_run: bool = False,
    echo: Callable[[str], Any] = print,
) -> str | None:
    """Validate a weights folder and upload it to a Hub repository (huggingface_hub's upload API).

    Args:
        folder: the weights folder, e.g. ``weights/lite_unet.multi``.
        repo_id: ``ORG/NAME``; created if missing.
        revision: branch to commit to (default ``main``).
        tag: also tag the new commit (e.g. ``v0.1.0``).
        commit_message: defaults to "Upload <folder name> weights (liteunet <version>)".
        private: create the repository private.
        create_pr: open a pull request instead of committing.
        token: Hub token (default: ``HF_TOKEN`` or the one saved by ``hf auth login``).
        dry_run: validate and list what would be uploaded; upload nothing.
        echo: where progress lines go.

    Returns:
        The commit id (pin it: ``hf_hub_id="ORG/NAME@<commit>"``), or ``None`` for a dry run.

    Raises:
        PretrainedWeightsError: the folder is not ready (every problem listed).
        ValueError: ``repo_id`` is malformed.

    Example:
        >>> push_weights_folder(
        ...     "weights/lite_unet.multi", "liteunet/lite_unet.multi", dry_run=True
        ... )  # doctest: +SKIP
    """
    if "/" not in repo_id:
        raise ValueError(f"repo_id must be ORG/NAME, got {repo_id!r}")
    validate_repo_id(repo_id)
    plan = validate_weights_folder(folder)
    tagged = f", tag {tag}" if tag else ""
    target = f"{hf_constants.ENDPOINT}/{repo_id} (revision {revision or 'main'}{tagged})"
    sizes = {f: (plan.folder / f).stat().st_size for f in plan.files}
    width = max(len(f) for f in plan.files)
    verb = "Would upload" if dry_run else "Uploading"
    echo(
        f"{verb} {len(plan.files)} files ({_size(sum(sizes.values()))}) from {plan.folder} to "
        f"{target}:"
    )
    for f in plan.files:
        echo(f"  {f:<{width}}  {_size(sizes[f]):>9}")
    echo(f"Checked: {CONFIG_NAME}, {CARD_NAME}, {plan.summary}.")
    for note in plan.notes:
        echo(f"Note: {note}")
    if dry_run:
        return None
    api = HfApi(token=token, **LIBRARY)
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id,
        folder_path=str(plan.folder),
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message
        or f"Upload {plan.folder.name} weights (liteunet {__version__})",
        allow_patterns=plan.files,
    )
    commit = getattr(info, "oid", None)
    if tag and commit and not create_pr:
        api.create_tag(repo_id, tag=tag, revision=commit, tag_message=f"liteunet {__version__}")
    echo(f"Done: {getattr(info, 'commit_url', repo_id)}")
    if commit:
        echo(f"Pin it in the tag's pretrained_cfg: hf_hub_id='{repo_id}@{tag or commit}'")
    return commit


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
