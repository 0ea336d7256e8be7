"""``liteunet push``: validate a weights folder and upload it to the Hugging Face Hub."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    from ..publish import push_weights_folder  # loads torch: only when the command runs

    push_weights_folder(
        args.folder,
        args.repo_id,
        revision=args.revision,
        tag=args.tag,
        commit_message=args.commit_message,
        private=args.private,
        create_pr=args.create_pr,
        token=args.token,
        dry_run=args.dry_run,
    )
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "push",
        help="validate a weights folder and upload it to the Hugging Face Hub",
        description="Validate a weights folder (config.json, README.md, model.safetensors loadable "
        "into its architecture) and upload it with huggingface_hub. Log in (hf auth login) or "
        "set HF_TOKEN.",
    )
    p.add_argument("folder", help="weights folder, e.g. weights/lite_unet.multi")
    p.add_argument("--repo-id", required=True, help="Hub repository, ORG/NAME (created if missing)")
    p.add_argument("--revision", default=None, help="branch to commit to (default main)")
    p.add_argument("--tag", default=None, help="also tag the commit, e.g. v0.1.0")
    p.add_argument("--commit-message", default=None, help="commit message")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument(
        "--create-pr", action="store_true", help="open a pull request instead of committing"
    )
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN or hf auth login)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="validate and list what would be uploaded; upload nothing",
    )
    p.set_defaults(func=run)
    return p
