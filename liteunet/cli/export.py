"""``liteunet export onnx``: a model for other runtimes (ONNX, int8 through ONNX Runtime)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="export a model for other runtimes (ONNX, int8)",
        description="Export a model with its weights and localization settings for other runtimes.",
    )
    formats = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    q = formats.add_parser(
        "onnx",
        help="ONNX file with dynamic batch, height and width (optionally int8)",
        description="Write an ONNX file (fused, float32, dynamic batch/height/width), checked against "
        "PyTorch with ONNX Runtime. With --int8, quantize it statically (int8 weights, uint8 "
        "activations) on calibration crops. Run it with localize(model='file.onnx'). Needs "
        "pip install 'liteunet[onnx]'.",
    )
    q.add_argument("model", help="pretrained tag, model name or weights folder")
    q.add_argument("-o", "--output", required=True, help="the .onnx file to write")
    q.add_argument("--int8", action="store_true", help="post-training int8 quantization (ONNX Runtime)")
    q.add_argument(
        "--calibration", nargs="+", metavar="SOURCE",
        help="data set names (train split), folders or images for the int8 scales "
        "(default: the weights' training sets when the shared data sets are found, else the bundled sample)",
    )
    q.add_argument("--example-size", type=int, default=256, help="side of the traced example (default 256)")
    q.add_argument("--no-check", dest="check", action="store_false", help="skip the ONNX Runtime check")
    q.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    # Loads torch (and the ONNX packages): only when the command runs.
    from ..inference import OnnxModel, calibration_images, default_calibration_images, export_onnx, quantize_onnx
    from ..models import load_model

    model = load_model(args.model)
    out = Path(args.output)
    if not args.int8:
        export_onnx(model, out, example_size=args.example_size, check=args.check)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, fp32, dynamic batch/height/width)")
        return 0
    sources = args.calibration
    if sources:
        images = calibration_images(sources)
    else:
        images, sources = default_calibration_images(model)
    with tempfile.TemporaryDirectory() as tmp:
        fp32_file = export_onnx(model, Path(tmp) / "model.onnx", example_size=args.example_size, check=args.check)
        quantize_onnx(fp32_file, out, images)
    OnnxModel(out)  # loads: fail here rather than at the user's first localize
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB, int8, calibrated on {len(images)} crops of {', '.join(map(str, sources))})")
    return 0
