"""liteunet.zoo: the model zoo table is read from the weights folders, never typed by hand."""

from __future__ import annotations

import json
import shutil

import pytest

import liteunet
from liteunet.zoo import (
    DASH,
    default_weights_dir,
    read_benchmarks,
    render_zoo_descriptions,
    render_zoo_table,
    zoo_entries,
)

WEIGHTS = default_weights_dir()


def _folders():
    return sorted(f for f in WEIGHTS.iterdir() if (f / "config.json").is_file())


def test_every_committed_weights_folder_is_a_row_with_its_recorded_numbers():
    entries = zoo_entries(WEIGHTS)
    assert [e.tag for e in entries] == [f.name for f in _folders()]
    table = render_zoo_table(entries)
    for e, folder in zip(entries, _folders()):
        config = json.loads((folder / "config.json").read_text())
        assert e.architecture == config["architecture"]
        assert e.params == config["training"]["params"]
        assert e.macs_512 == config["training"]["macs_512"]
        row = next(line for line in table.splitlines() if line.startswith(f"| `{e.tag}`<br>"))
        assert f"{e.params / 1e6:.2f} M" in row and f"{e.macs_512 / 1e9:.2f}" in row
        for name, metrics in (config.get("evaluation") or {}).get("metrics", {}).items():
            assert f"{name} {metrics['f1@5']:.3f} / {metrics['f1@10']:.3f}" in row
        assert row.split(" | ")[5] == DASH  # no benchmark file given: no latency


def test_default_weights_row_matches_the_model():
    (entry,) = [e for e in zoo_entries(WEIGHTS) if e.tag == "lite_unet.multi"]
    assert entry.params == liteunet.count_params(liteunet.create_model("lite_unet"))
    assert entry.licence == "other"  # the card's front matter: research-use training data
    assert "research use only" in entry.data_terms and entry.metrics_source == "evaluation"


def test_a_new_folder_appears_and_missing_records_are_counted_or_dashed(tmp_path):
    shutil.copytree(WEIGHTS / "lite_unet.multi", tmp_path / "lite_unet.multi", ignore=shutil.ignore_patterns("*.safetensors"))
    bare = tmp_path / "lite_unet.tiny"
    bare.mkdir()
    model_args = {"widths": [8, 8, 16, 16, 16], "num_classes": 2}
    (bare / "config.json").write_text(json.dumps({"architecture": "lite_unet", "num_classes": 2, "model_args": model_args}))
    (tmp_path / "notes").mkdir()  # a folder without config.json is not a weights folder
    entries = zoo_entries(tmp_path)
    assert [e.tag for e in entries] == ["lite_unet.multi", "lite_unet.tiny"]
    tiny = entries[1]
    model = liteunet.create_model("lite_unet", **model_args)
    assert tiny.params == liteunet.count_params(model)
    assert tiny.macs_512 == liteunet.count_macs(model, (3, 512, 512))
    row = render_zoo_table(entries).splitlines()[-1]
    assert row.startswith("| `lite_unet.tiny`<br>2 classes | — | — |")
    descriptions = render_zoo_descriptions(entries)
    assert "### `lite_unet.tiny`" in descriptions and "licence `not stated`" in descriptions
    assert "terms of the training data: CC0 1.0; academic use; research use; research use only" in descriptions


def test_training_validation_is_used_and_marked_when_there_is_no_evaluation(tmp_path):
    folder = tmp_path / "lite_unet.run"
    folder.mkdir()
    config = json.loads((WEIGHTS / "lite_unet.multi" / "config.json").read_text())
    del config["evaluation"]
    (folder / "config.json").write_text(json.dumps(config))
    (entry,) = zoo_entries(tmp_path)
    assert entry.metrics_source == "training"
    assert entry.metrics["crc"]["f1@5"] == config["training"]["validation"]["val/crc/f1@5"]
    assert "(val. during training)" in render_zoo_table([entry])


def test_latency_comes_from_the_benchmark_file(tmp_path):
    bench = tmp_path / "latest.json"
    bench.write_text(json.dumps({
        "device": "x86_64 CPU, 2 threads",
        "results": [
            {"model": "lite_unet.multi", "latency_ms": 123.456, "precision": "fp32", "input_size": [1, 3, 512, 512]},
            {"model": "unet", "latency_ms": 900.0},
            {"model": "lite_unet.multi", "throughput": 3.0},  # not a latency record
        ],
    }))
    (entry,) = [e for e in zoo_entries(WEIGHTS, bench) if e.tag == "lite_unet.multi"]
    assert [r["latency_ms"] for r in entry.latency] == [123.456]
    row = render_zoo_table([entry]).splitlines()[-1]
    assert "123.5 ms (x86_64 CPU, 2 threads, fp32, 512x512)" in row


def test_latency_falls_back_to_the_architecture_and_absent_file_is_no_latency(tmp_path):
    bench = tmp_path / "latest.json"
    bench.write_text(json.dumps([{"model": "lite_unet", "median_ms": 40.0, "device": "cuda"}]))
    (entry,) = [e for e in zoo_entries(WEIGHTS, bench) if e.tag == "lite_unet.multi"]
    assert "40.0 ms (cuda)" in render_zoo_table([entry])
    assert read_benchmarks(tmp_path / "absent.json") == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ('{"results": 3}', "expected a list"),
    ('[{"latency_ms": 3}]', "has no 'model'"),
])
def test_bad_benchmark_files_say_what_is_wrong(tmp_path, content, message):
    bench = tmp_path / "latest.json"
    bench.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_benchmarks(bench)


def test_missing_weights_dir_and_bad_config_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="weights folder not found"):
        zoo_entries(tmp_path / "nowhere")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="names no 'architecture'"):
        zoo_entries(tmp_path)
