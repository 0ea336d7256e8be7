"""``liteunet bench --throughput``: images per second in batches, both networks, one run."""

from __future__ import annotations

import json

import pytest
import torch

from liteunet.cli import main
from liteunet.bench import THROUGHPUT_FORMS, run_throughput, throughput_markdown
from liteunet.zoo import read_benchmarks

TINY = dict(device="cpu", batch=2, size=32, precision="fp32", repeats=2, iterations=1, warmup=1, progress=False)


def test_both_networks_are_timed_side_by_side_on_cpu():
    result = run_throughput(forms=("eager", "cudagraphs"), **TINY)
    rows = {(row["model"], row["form"]): row for row in result["rows"]}
    assert set(rows) == {(m, f) for m in ("lite_unet", "unet") for f in ("eager", "cudagraphs")}
    lite, unet = rows["lite_unet", "eager"], rows["unet", "eager"]
    for row in (lite, unet):
        assert len(row["rounds_images_per_s"]) == 2 and row["images_per_s"] > 0
        assert row["ms_per_batch"] == pytest.approx(1000 * 2 / row["images_per_s"])
        assert row["tflops"] == pytest.approx(2 * row["macs_per_image"] * row["images_per_s"] / 1e12)
        assert row["peak_memory_mb"] is None  # measured on CUDA only
    assert unet["ratio_to_unet"] == 1.0
    assert lite["ratio_to_unet"] == pytest.approx(lite["images_per_s"] / unet["images_per_s"])
    assert unet["macs_per_image"] > 10 * lite["macs_per_image"]
    # CUDA graphs need CUDA: said, not timed, not fatal
    assert rows["lite_unet", "cudagraphs"]["note"] == "CUDA only" and rows["lite_unet", "cudagraphs"]["images_per_s"] is None
    assert result["batch_size"] == 2 and result["input_size"] == "32x32" and "thread" in result["device"]


def test_a_form_that_fails_is_reported_and_the_others_still_run(monkeypatch):
    from liteunet.bench import throughput

    real_build = throughput._build

    def build(model_name, *args):
        if model_name == "unet":
            raise RuntimeError("out of memory")
        return real_build(model_name, *args)

    monkeypatch.setattr(throughput, "_build", build)
    result = run_throughput(forms=("eager",), **TINY)
    rows = {row["model"]: row for row in result["rows"]}
    assert rows["unet"]["note"] == "failed: RuntimeError: out of memory" and rows["unet"]["images_per_s"] is None
    assert rows["lite_unet"]["images_per_s"] > 0 and rows["lite_unet"]["ratio_to_unet"] is None
    assert "| unet | eager | failed: RuntimeError: out of memory |" in throughput_markdown(result)


def test_bad_requests_name_the_problem():
    with pytest.raises(ValueError, match=f"choose from {', '.join(THROUGHPUT_FORMS)}"):
        run_throughput(forms=("fastest",), **TINY)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        run_throughput(**{**TINY, "batch": 0})
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            run_throughput(**{**TINY, "device": "cuda"})


def test_bench_throughput_command_writes_what_the_docs_and_zoo_read(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main([
        "bench", "--throughput", "--device", "cpu", "--batch", "2", "--size", "32", "--precision", "fp32",
        "--forms", "eager", "--repeats", "1", "--iterations", "1", "--warmup", "1", "--threads", "1", "-o", str(out),
    ])
    assert code == 0
    assert "| lite_unet | eager |" in capsys.readouterr().out
    result = json.loads((out / "throughput_cpu.json").read_text())
    assert (out / "throughput_cpu.md").read_text() == throughput_markdown(result)
    records = read_benchmarks(out / "throughput_cpu.json")
    assert {r["model"] for r in records} == {"lite_unet", "unet"}
    assert all(r["batch_size"] == 2 and r["backend"] == "PyTorch, eager" for r in records)
    lite = next(r for r in result["rows"] if r["model"] == "lite_unet")
    assert next(r for r in records if r["model"] == "lite_unet")["latency_ms"] == pytest.approx(1000 / lite["images_per_s"], abs=1e-3)


def test_an_unknown_throughput_form_is_an_error_on_the_command_line(capsys):
    assert main(["bench", "--throughput", "--device", "cpu", "--forms", "fastest"]) == 1
    assert "unknown throughput form" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_throughput_with_cuda_graphs():
    result = run_throughput(device="cuda", batch=2, size=64, precision="bf16", repeats=1, iterations=2, warmup=3, progress=False)
    for row in result["rows"]:
        assert row["images_per_s"] and row["images_per_s"] > 0, row["note"]
        assert row["peak_memory_mb"] > 0
