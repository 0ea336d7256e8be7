"""``liteunet train``: train or fine-tune on shared data sets or a folder of images + CSV points."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from ..train import add_train_arguments, config_from_args, train


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train or fine-tune on shared data sets or your own folder of images + CSV points",
        description="Train (or, with --pretrained, fine-tune) a model. Validates every epoch with "
        "F1 at 5 and 10 px, keeps the best weights in OUT_DIR/best/ and resumes from OUT_DIR/last.pt.",
    )
    add_train_arguments(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    best = train(config_from_args(args))
    print(json.dumps({k: v for k, v in best.items() if not k.startswith("val/") or "mean" in k}, indent=2))
    return 0
