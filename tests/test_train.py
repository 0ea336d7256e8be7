"""Training and evaluation on a small folder of synthetic images with CSV points."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import liteunet
from liteunet.data import gaussian_target, load_folder, load_split
from liteunet.evaluate import LocalizationSettings, evaluate_maps, select_settings, selection_score
from liteunet.cli.train import add_train_arguments, config_from_args
from liteunet.train import TrainConfig, _crops_per_set, _epoch_indices, _sigma_per_set, train

TINY = {"widths": [8, 8, 16, 16, 16]}


def _make_folder(root: Path, n: int = 5, size: int = 64) -> Path:
    """Dark images with bright 3x3 'cells' at random places, and their CSV points."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = np.full((size, size, 3), 30, np.uint8)
        points = rng.uniform(4, size - 5, size=(6, 2)).round()
        for x, y in points.astype(int):
            image[y - 1 : y + 2, x - 1 : x + 2] = 230
        Image.fromarray(image).save(root / f"img{i}.png")
        (root / f"img{i}.csv").write_text("x,y\n" + "".join(f"{x},{y}\n" for x, y in points))
    return root


def test_epoch_indices_balance_sets_and_are_seeded():
    a = _epoch_indices([3, 100], [10, 10], seed=0, epoch=1)
    assert a == _epoch_indices([3, 100], [10, 10], seed=0, epoch=1)
    assert a != _epoch_indices([3, 100], [10, 10], seed=0, epoch=2)
    assert sum(i < 3 for i in a) == 10 and sum(i >= 3 for i in a) == 10
    assert set(i for i in a if i < 3) == {0, 1, 2}  # a small set is cycled through, not skipped


def test_crops_per_set_weights_one_set_and_defaults_the_rest():
    names, sizes = ["crc", "mbm", "adi"], [70, 30, 10]
    assert _crops_per_set(None, names, sizes) == sizes
    assert _crops_per_set(128, names, sizes) == [128, 128, 128]
    assert _crops_per_set({"crc": 384, "*": 128}, names, sizes) == [384, 128, 128]
    assert _crops_per_set({"crc": 384}, names, sizes) == [384, 30, 10]
    with pytest.raises(ValueError, match="'vgg'"):
        _crops_per_set({"vgg": 5}, names, sizes)


def test_crop_sizes_train_batches_of_each_side_with_the_same_pixels(tmp_path, monkeypatch):
    import liteunet.train as training

    shapes = []
    forward = training.F.mse_loss

    def recording(pred, target):
        shapes.append(tuple(target.shape))
        return forward(pred, target)

    monkeypatch.setattr(training.F, "mse_loss", recording)
    data = _make_folder(tmp_path / "data", n=6)
    cfg = TrainConfig(datasets=[str(data)], out_dir=str(tmp_path / "run"), epochs=2, batch_size=4, crop_size=32,
                      crop_sizes=[32, 64], model_args=TINY, samples_per_epoch=24, seed=1, progress=False)
    train(cfg)
    assert {(4, 1, 32, 32), (1, 1, 64, 64)} == set(shapes)  # 4 x 32^2 = 1 x 64^2 pixels
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert steps[-1] == len(shapes)
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert config_from_args(parser.parse_args(["crc", "--crop-sizes", "256", "512"])).crop_sizes == [256, 512]
    with pytest.raises(ValueError, match="crop_sizes"):
        TrainConfig(crop_sizes=[8]).resolved()


def test_samples_per_epoch_option_takes_a_count_and_per_set_counts():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert config_from_args(parser.parse_args(["crc", "--samples-per-epoch", "64"])).samples_per_epoch == 64
    cfg = config_from_args(parser.parse_args(["crc", "mbm", "--samples-per-epoch", "128", "crc=384"]))
    assert cfg.samples_per_epoch == {"*": 128, "crc": 384}
    with pytest.raises(SystemExit):
        parser.parse_args(["crc", "--samples-per-epoch", "crc=many"])


def test_sigma_option_takes_one_width_or_per_set_widths():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert config_from_args(parser.parse_args(["crc"])).sigma == 2.0
    assert config_from_args(parser.parse_args(["crc", "--sigma", "3"])).sigma == 3.0
    cfg = config_from_args(parser.parse_args(["crc", "bcdata", "--sigma", "2", "bcdata=4"]))
    assert cfg.sigma == {"*": 2.0, "bcdata": 4.0}
    assert _sigma_per_set(cfg.sigma, ["crc", "bcdata"]) == [2.0, 4.0]
    assert _sigma_per_set({"bcdata": 4.0}, ["crc", "bcdata"]) == [2.0, 4.0]  # unnamed sets: 2 px
    with pytest.raises(ValueError, match="'mbm'"):
        _sigma_per_set({"mbm": 4.0}, ["crc"])
    with pytest.raises(ValueError, match="positive"):
        _sigma_per_set({"crc": 0.0}, ["crc"])
    with pytest.raises(ValueError, match="positive"):
        _sigma_per_set(-1.0, ["crc"])
    with pytest.raises(SystemExit):
        parser.parse_args(["crc", "--sigma", "crc=wide"])


def test_one_group_of_a_set_takes_its_own_share_and_width():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    group = "dsb2018:tissue_256x320"
    cfg = config_from_args(parser.parse_args(
        ["dsb2018:fluo_256x256", group, "--samples-per-epoch", "64", f"{group}=96", "--sigma", "2", f"{group}=4"]
    ))
    assert cfg.datasets == ["dsb2018:fluo_256x256", group]
    assert cfg.samples_per_epoch == {"*": 64, group: 96} and cfg.sigma == {"*": 2.0, group: 4.0}
    assert _crops_per_set(cfg.samples_per_epoch, cfg.datasets, [275, 81]) == [64, 96]
    assert _sigma_per_set(cfg.sigma, cfg.datasets) == [2.0, 4.0]


def test_scale_options_replace_the_augmentations_zoom(tmp_path, monkeypatch):
    import liteunet.train as training
    from liteunet.data import AugmentConfig

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args(["crc", "--augment", "generalist", "--scale-range", "0.7", "1.4", "--scale-prob", "0.3"]))
    assert (cfg.scale_range, cfg.scale_prob) == ([0.7, 1.4], 0.3)
    assert config_from_args(parser.parse_args(["crc"])).scale_range is None
    zoomed = AugmentConfig.preset("generalist", scale_range=(0.7, 1.4), scale_prob=0.3)
    assert zoomed == AugmentConfig(**{**AugmentConfig.generalist().__dict__, "scale_range": (0.7, 1.4), "scale_prob": 0.3})
    assert AugmentConfig.preset("generalist", scale_prob=0.0).scale_range == (0.5, 2.0)  # the rest kept
    with pytest.raises(ValueError, match="scale_range"):
        AugmentConfig.preset("generalist", scale_range=(2.0, 0.5))
    with pytest.raises(ValueError, match="scale_prob"):
        AugmentConfig.preset("full", scale_prob=1.5)
    with pytest.raises(ValueError, match="'none'"):
        AugmentConfig.preset("none", scale_prob=0.5)

    seen = []
    real = training.PointDataset

    def recording(samples, **kwargs):
        seen.append(kwargs["augment"])
        return real(samples, **kwargs)

    monkeypatch.setattr(training, "PointDataset", recording)
    data = _make_folder(tmp_path / "data", n=3)
    train(TrainConfig(datasets=[str(data)], out_dir=str(tmp_path / "run"), epochs=1, batch_size=2, crop_size=32,
                      model_args=TINY, samples_per_epoch=2, augment="generalist", scale_range=(0.8, 1.25),
                      scale_prob=0.4, progress=False))
    assert (seen[0].scale_range, seen[0].scale_prob, seen[0].stain) == ((0.8, 1.25), 0.4, 0.08)


def test_each_training_set_gets_its_own_augmentation(tmp_path, monkeypatch):
    import liteunet.train as training
    from liteunet.data import AugmentConfig

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert config_from_args(parser.parse_args(["crc", "--augment", "generalist"])).augment == "generalist"
    cfg = config_from_args(parser.parse_args(["crc", "bcdata", "--augment", "generalist", "bcdata=full"]))
    assert cfg.augment == {"*": "generalist", "bcdata": "full"}
    with pytest.raises(SystemExit):
        parser.parse_args(["crc", "--augment", "crc=strong"])

    seen = {}
    real = training.PointDataset

    def recording(samples, **kwargs):
        seen[Path(samples[0].image_path).parent.name] = kwargs["augment"]
        return real(samples, **kwargs)

    monkeypatch.setattr(training, "PointDataset", recording)
    a, b, c = (_make_folder(tmp_path / name, n=3) for name in ("a", "b", "c"))
    train(TrainConfig(datasets=[str(a), str(b), str(c)], out_dir=str(tmp_path / "run"), epochs=1, batch_size=2,
                      crop_size=32, model_args=TINY, samples_per_epoch=2, augment={str(b): "full", str(c): "none"},
                      scale_range=(0.8, 1.25), scale_prob=0.4, progress=False))
    # a set not named gets the preset's ("cpu": full); the zoom options reach every set that augments
    zoomed_full = AugmentConfig.preset("full", scale_range=(0.8, 1.25), scale_prob=0.4)
    assert seen == {"a": zoomed_full, "b": zoomed_full, "c": False}
    with pytest.raises(ValueError, match="'mbm'"):
        training._augment_per_set(TrainConfig(datasets=["crc"], augment={"mbm": "full"}))
    with pytest.raises(ValueError, match="unknown augment 'strong'"):
        training._augment_per_set(TrainConfig(datasets=["crc"], augment={"crc": "strong"}))


def test_each_training_set_gets_targets_of_its_own_width(tmp_path, monkeypatch):
    import liteunet.train as training

    widths = {}
    real = training.PointDataset

    def recording(samples, **kwargs):
        widths[Path(samples[0].image_path).parent.name] = kwargs["target_fn"].keywords["sigma"]
        return real(samples, **kwargs)

    monkeypatch.setattr(training, "PointDataset", recording)
    small, large = _make_folder(tmp_path / "small", n=3), _make_folder(tmp_path / "large", n=3)
    out = tmp_path / "run"
    cfg = TrainConfig(datasets=[str(small), str(large)], out_dir=str(out), epochs=1, batch_size=2, crop_size=32,
                      model_args=TINY, samples_per_epoch=2, sigma={str(large): 4.0, "*": 1.5}, progress=False)
    train(cfg)
    assert widths == {"small": 1.5, "large": 4.0}
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["localization"]["sigma"] == 1.5  # the width of the sets not named
    assert config["training"]["sigma"] == {str(small): 1.5, str(large): 4.0}
    from liteunet.model_card import write_model_card

    card = write_model_card(out / "best", "tiny").read_text()
    assert f"Gaussian targets, sigma 1.5 px; {large} 4.0 px)" in card


def test_select_settings_on_perfect_maps_gives_f1_one(tmp_path):
    samples = load_folder(_make_folder(tmp_path / "data", n=2))
    maps = [gaussian_target(s.points, s.labels, (64, 64), sigma=2.0) * 0.8 for s in samples]
    settings, result = select_settings(maps, samples)
    assert result["f1@5"] == 1.0 and result["f1@10"] == 1.0
    assert settings.threshold <= 0.8
    too_high = evaluate_maps(maps, samples, LocalizationSettings(threshold=0.9)).compute()
    assert too_high["recall@10"] == 0.0


def test_evaluating_a_one_class_model_on_classes_reports_each_annotated_class_found():
    """bcdata is annotated positive and negative: a one-class model's summary says which it finds."""
    from liteunet.data import Sample

    points = np.array([[10, 10], [40, 12], [20, 45], [50, 50]], dtype=np.float32)
    labels = np.array([0, 0, 1, 1])
    sample = Sample(Path("unused.png"), points, labels, "a")
    found_positives = gaussian_target(points[:2], np.zeros(2, np.int64), (64, 64), sigma=2.0)  # (1, H, W)
    out = evaluate_maps([found_positives], [sample], LocalizationSettings(threshold=0.5)).compute()
    assert out["recall@10/annotated0"] == 1.0 and out["recall@10/annotated1"] == 0.0
    assert out["recall@10"] == 0.5
    one_class = Sample(Path("unused.png"), points, np.zeros(4, np.int64), "a")
    plain = evaluate_maps([found_positives], [one_class], LocalizationSettings(threshold=0.5)).compute()
    assert not any("annotated" in key for key in plain)


def _maps_with_a_false_peak(samples, size: int, cell: float, false_peak: float) -> list[np.ndarray]:
    """Each sample's Gaussian map at height ``cell`` plus one peak of ``false_peak`` far from every cell."""
    yy, xx = np.mgrid[0:size, 0:size]
    maps = []
    for s in samples:
        distance = np.min(np.hypot(xx[..., None] - s.points[:, 0], yy[..., None] - s.points[:, 1]), axis=-1)
        y, x = np.unravel_index(np.argmax(distance), distance.shape)
        assert distance[y, x] > 12  # a false positive at 10 px
        far = np.array([[x, y]], dtype=np.float32)
        maps.append(np.maximum(
            gaussian_target(s.points, s.labels, (size, size), sigma=2.0) * cell,
            gaussian_target(far, np.zeros(1, np.int64), (size, size), sigma=2.0) * false_peak,
        ))
    return maps


@pytest.mark.parametrize("checkpoint_by", ["shared", "per-dataset"])
def test_checkpoint_by_scores_sets_with_one_setting_or_each_its_own(tmp_path, monkeypatch, checkpoint_by):
    import liteunet.train as train_module

    size = 96
    val_sets = {
        "faint": load_folder(_make_folder(tmp_path / "faint", n=2, size=size)),
        "bright": load_folder(_make_folder(tmp_path / "bright", n=2, size=size)),
    }
    # 'faint' needs a threshold in (0.25, 0.35], 'bright' one in (0.75, 0.95]: no one setting suits both.
    maps = {"faint": _maps_with_a_false_peak(val_sets["faint"], size, 0.35, 0.25),
            "bright": _maps_with_a_false_peak(val_sets["bright"], size, 0.95, 0.75)}
    maps_of = {id(samples): maps[name] for name, samples in val_sets.items()}
    monkeypatch.setattr(train_module, "predict_maps", lambda model, samples, *a, **k: maps_of[id(samples)])

    # Direct computation over the training grid.
    def score(name, threshold, min_distance):
        settings = LocalizationSettings(threshold, min_distance)
        return selection_score(evaluate_maps(maps[name], val_sets[name], settings).compute())

    grid = [(t, d) for d in (2, 3, 4) for t in np.round(np.arange(0.1, 0.91, 0.1), 2)]
    shared = max(np.mean([score(n, t, d) for n in maps]) for t, d in grid)
    own = np.mean([max(score(n, t, d) for t, d in grid) for n in maps])
    assert own == 1.0 and shared < own

    cfg = TrainConfig(datasets=["faint", "bright"], out_dir=str(tmp_path / "run"), model_args=TINY, checkpoint_by=checkpoint_by)
    model = liteunet.create_model("lite_unet", **TINY)
    best = {"score": (shared + own) / 2}  # an earlier checkpoint scoring between the two
    row = {"epoch": 3, "step": 30, "minutes": 1.0}
    result = train_module._validate(model, val_sets, cfg, torch.device("cpu"), None, best, TINY, tmp_path / "run", row)
    assert result["val/shared_score"] == pytest.approx(shared)
    assert result["val/own_settings_score"] == pytest.approx(own)
    assert result["val/faint/own_settings_score"] == result["val/bright/own_settings_score"] == 1.0
    saved = (tmp_path / "run" / "best" / "config.json").exists()
    assert saved == (checkpoint_by == "per-dataset")
    # The stored setting is still the shared one: the one a plain localize() call uses.
    if saved:
        stored = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["localization"]
        assert score("faint", stored["threshold"], stored["min_distance"]) + score(
            "bright", stored["threshold"], stored["min_distance"]) == pytest.approx(2 * shared)


def test_checkpoint_by_rejects_an_unknown_choice():
    with pytest.raises(ValueError, match="checkpoint_by 'best'"):
        TrainConfig(checkpoint_by="best").resolved()


def test_train_writes_weights_logs_and_resumes(tmp_path):
    data = _make_folder(tmp_path / "data")
    out = tmp_path / "run"
    cfg = TrainConfig(
        datasets=[str(data)], out_dir=str(out), epochs=2, batch_size=2, crop_size=32, model_args=TINY,
        samples_per_epoch=4, progress=False,
    )
    best = train(cfg)
    assert {"score", "threshold", "min_distance"} <= set(best)
    config = json.loads((out / "best" / "config.json").read_text())
    assert config["architecture"] == "lite_unet"
    assert set(config["localization"]) == {"threshold", "min_distance", "sigma"}
    assert config["training"]["params"] > 0 and "CPU" in config["training"]["hardware"]
    rows = (out / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and "val/data/f1@10" in rows[0]
    # the best folder loads back through timm's local-dir source
    model = liteunet.create_model(f"local-dir:{out / 'best'}", pretrained=True)
    assert model.widths == (8, 8, 16, 16, 16)
    # resume: two more epochs continue from epoch 2 and step 4
    cfg.epochs = 4
    train(cfg)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["step"] for r in rows] == [2, 4, 6, 8]


def test_training_curves_leave_the_callers_matplotlib_state_alone(tmp_path):
    """curves.png is drawn without pyplot or matplotlib.use: in Jupyter the inline backend and the
    notebook's own figures survive a call to train() (they went blank when train switched to Agg)."""
    pytest.importorskip("matplotlib")
    script = """
import sys
from pathlib import Path
import matplotlib
matplotlib.use("svg")
import matplotlib.pyplot as plt
mine = plt.figure()
from liteunet.train_logs import plot_curves as _plot
rows = [{"epoch": e, "train_loss": 1.0 / e, "val/a/f1@5": 0.1 * e, "val/a/f1@10": 0.2 * e} for e in (1, 2, 3)]
_plot(rows, Path(sys.argv[1]))
print(matplotlib.get_backend(), plt.get_fignums(), plt.gcf() is mine)
"""
    png = tmp_path / "curves.png"
    out = subprocess.run([sys.executable, "-c", script, str(png)], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[-2] == "svg [1] True", out.stdout + out.stderr
    with Image.open(png) as image:
        assert image.size == (1000, 400)


def test_fine_tune_from_a_weights_folder_changes_num_classes(tmp_path):
    data = _make_folder(tmp_path / "data", n=3)
    base = tmp_path / "base"
    train(TrainConfig(datasets=[str(data)], out_dir=str(base), epochs=1, batch_size=2, crop_size=32,
                      model_args=TINY, samples_per_epoch=2, progress=False))
    out = tmp_path / "ft"
    train(TrainConfig(datasets=[str(data)], out_dir=str(out), epochs=1, batch_size=2, crop_size=32,
                      model_args=TINY, samples_per_epoch=2, progress=False, pretrained=str(base / "best")))
    tuned = torch.load(out / "last.pt", weights_only=True)["model"]
    from safetensors.torch import load_file

    start = load_file(base / "best" / "model.safetensors")
    assert tuned.keys() == start.keys()


def _tiny_weights(folder: Path, num_classes: int) -> Path:
    """A tiny random model saved as a weights folder (a teacher needs no training to be tested)."""
    from liteunet.train import save_weights

    torch.manual_seed(0)
    model = liteunet.create_model("lite_unet", num_classes=num_classes, **TINY)
    return save_weights(model, folder, LocalizationSettings(), dict(TINY, num_classes=num_classes, in_chans=3))


def test_fine_tuning_keeps_the_input_scaling_the_weights_learned_with(tmp_path):
    folder = _tiny_weights(tmp_path / "w", 1)
    config = json.loads((folder / "config.json").read_text())
    config["localization"]["normalize"] = "percentile"
    (folder / "config.json").write_text(json.dumps(config))
    assert TrainConfig(pretrained=str(folder)).resolved().normalize == "percentile"
    assert TrainConfig(pretrained=str(folder), normalize="auto").resolved().normalize == "auto"  # asked for wins
    assert TrainConfig().resolved().normalize == "auto"  # from scratch
    # the zoo's tags: the default stores percentiles, multi does not
    assert TrainConfig(pretrained="lite_unet.generalist").resolved().normalize == "percentile"
    assert TrainConfig(pretrained="lite_unet.multi").resolved().normalize == "auto"
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    assert config_from_args(parser.parse_args(["data", "--pretrained", str(folder)])).resolved().normalize == "percentile"


def test_teacher_maps_are_learned_beside_the_points(tmp_path, monkeypatch):
    """--teacher: the teacher's maps of the training images reach the targets, mixed by weight."""
    import liteunet.data.torch_dataset as torch_dataset
    from liteunet.teacher import teacher_maps

    data = _make_folder(tmp_path / "data", n=3)
    teacher = _tiny_weights(tmp_path / "teacher" / "best", num_classes=1)
    samples = load_split(str(data), "train")
    maps = teacher_maps(str(teacher), samples)
    assert [m.shape for m in maps] == [(1, 64, 64)] * len(samples) and all(0 <= m.min() and m.max() <= 1 for m in maps)
    seen = []
    item = torch_dataset.PointDataset.item
    monkeypatch.setattr(torch_dataset.PointDataset, "item", lambda self, *a, **k: seen.append(self) or item(self, *a, **k))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args(
        [str(data), "-o", str(tmp_path / "student"), "--teacher", str(teacher), "--teacher-weight", "0.3",
         "--amp", "off"]))
    assert cfg.teachers == {"*": str(teacher)} and cfg.teacher_weight == 0.3
    cfg = dataclasses.replace(cfg, epochs=1, batch_size=2, crop_size=32, model_args=TINY, samples_per_epoch=2,
                              progress=False)
    train(cfg)
    assert seen and seen[0].soft_target_weight == 0.3
    np.testing.assert_allclose(seen[0].soft_targets[0], maps[0], atol=1e-6)
    stored = json.loads((tmp_path / "student" / "best" / "config.json").read_text())["training"]
    assert stored["teachers"] == {"*": str(teacher)} and stored["teacher_weight"] == 0.3
    with pytest.raises(ValueError, match="'mbm'"):
        train(dataclasses.replace(cfg, teachers={"mbm": str(teacher)}))


def test_a_two_class_teacher_teaches_one_map_by_its_maximum(tmp_path):
    from liteunet.teacher import teacher_maps

    samples = load_folder(_make_folder(tmp_path / "data", n=2))
    two = str(_tiny_weights(tmp_path / "two", num_classes=2))
    both = teacher_maps(two, samples, num_classes=2)
    one = teacher_maps(two, samples, num_classes=1)
    np.testing.assert_allclose(one[0], both[0].max(axis=0, keepdims=True))
    with pytest.raises(ValueError, match="gives 2 maps"):
        teacher_maps(two, samples, num_classes=3)


def test_teacher_points_are_its_peaks_at_its_stored_settings_drawn_as_targets(tmp_path):
    """--teacher-targets points: the teacher's peaks (its threshold, or the one tuned for the set) as Gaussians."""
    from liteunet.points import find_peaks
    from liteunet.teacher import teacher_maps, teacher_targets

    data = _make_folder(tmp_path / "data", n=2)
    samples = load_split(str(data), "train")
    teacher = _tiny_weights(tmp_path / "teacher", num_classes=1)
    maps = teacher_maps(str(teacher), samples)
    threshold = float(np.quantile(maps[0], 0.95))
    config = json.loads((teacher / "config.json").read_text())
    config["localization"].update(threshold=threshold, min_distance=2, tuned_for={"other": {"threshold": 2.0, "min_distance": 2}})
    (teacher / "config.json").write_text(json.dumps(config))
    draw = functools.partial(gaussian_target, sigma=3.0)
    drawn = teacher_targets(str(teacher), samples, "points", "mine", draw)
    for teacher_map, got in zip(maps, drawn):
        peaks = find_peaks(teacher_map, min_distance=2, threshold=threshold)
        np.testing.assert_allclose(got, draw(peaks.xy, None, (64, 64)), atol=1e-6)
    assert len(find_peaks(maps[0], min_distance=2, threshold=threshold)) and drawn[0].max() == pytest.approx(1.0)
    # The set's own settings win: no teacher peak reaches 2.0.
    assert all(m.max() == 0 for m in teacher_targets(str(teacher), samples, "points", "other", draw))
    np.testing.assert_allclose(teacher_targets(str(teacher), samples, "maps")[1], maps[1])
    with pytest.raises(ValueError, match="'maps', 'points'"):
        teacher_targets(str(teacher), samples, "peaks")
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([str(data), "--teacher", str(teacher), "--teacher-targets", "points"])
    assert config_from_args(args).teacher_targets == "points"


def test_time_limit_stops_at_an_epoch_end_so_resume_skips_nothing(tmp_path):
    data = _make_folder(tmp_path / "data", n=3)
    cfg = dict(datasets=[str(data)], out_dir=str(tmp_path / "run"), epochs=3, batch_size=2, crop_size=32,
               model_args=TINY, samples_per_epoch=4, progress=False)
    train(TrainConfig(**cfg, time_limit_min=1e-6))  # over the limit after the first step
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 0 and state["step"] == 2  # one whole epoch of 4 crops, batch 2
    train(TrainConfig(**cfg))  # resumes and finishes epochs 2 and 3
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step"] == 6


def test_fine_tuning_to_more_classes_starts_each_map_from_the_pretrained_one():
    from liteunet.train import _adapt_head

    model = liteunet.create_model("lite_unet", **TINY).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        _adapt_head(model, 2)
        after = model(x)
    assert after.shape == (1, 2, 32, 32) and model.num_classes == 2
    torch.testing.assert_close(after[:, :1], before)
    torch.testing.assert_close(after[:, 1:], before)


def test_release_writes_a_card_from_measured_numbers(tmp_path, capsys):
    from liteunet.cli import main
    from liteunet.release import finalize_weights

    data = _make_folder(tmp_path / "data", n=5)
    run = tmp_path / "run"
    train(TrainConfig(datasets=[str(data)], out_dir=str(run), epochs=1, batch_size=2, crop_size=32,
                      model_args=TINY, samples_per_epoch=2, progress=False))
    out = tmp_path / "weights" / "lite_unet.test"
    evaluation = finalize_weights(run / "best", out, "lite_unet.test", [str(data)])
    config = json.loads((out / "config.json").read_text())
    assert config["evaluation"]["metrics"]["data"]["f1@10"] == evaluation["data"]["f1@10"]
    settings_before = config["localization"]["threshold"]
    card = (out / "README.md").read_text()
    assert f"| data | {evaluation['data']['f1@5']:.3f} | {evaluation['data']['f1@10']:.3f} |" in card
    assert "## Training data and its terms" in card and "Intended use" in card
    # liteunet eval reproduces the card's numbers with the stored settings
    assert main(["eval", str(out), str(data), "--split", "validation", "-o", str(tmp_path / "eval")]) == 0
    assert f"F1@10 {evaluation['data']['f1@10']:.3f}" in capsys.readouterr().out
    # the precision check records bf16 against fp32 and the card shows it; the rest is kept
    from liteunet.release import check_precisions

    import liteunet.release

    prepared, prepare_model = [], liteunet.release.prepare_model

    def prepare_uncompiled(model, precision, **kwargs):  # compiling here would take most of a minute
        prepared.append((precision, kwargs.pop("compile", False)))
        return prepare_model(model, precision, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(liteunet.release, "prepare_model", prepare_uncompiled)
        guard = check_precisions(out, "lite_unet.test", [str(data)], ("bf16", "bf16_compiled"))
    assert prepared == [("bf16", False), ("bf16", True)]
    stored = json.loads((out / "config.json").read_text())["inference"]["precision_guard"]
    assert stored == json.loads(json.dumps(guard)) and set(guard) == {"bf16", "bf16_compiled"}
    assert set(guard["bf16"]["per_dataset"]["data"]) == {"f1@5", "f1@10", "fp32_f1@5", "fp32_f1@10"}
    card = (out / "README.md").read_text()
    assert "## Inference precision" in card and "| bf16 | data |" in card
    assert f"| data | {evaluation['data']['f1@5']:.3f} | {evaluation['data']['f1@10']:.3f} |" in card
    # test-time augmentation gets its own settings, recorded beside the plain ones
    from liteunet.release import tune_tta

    tta = tune_tta(out, "lite_unet.test", [str(data)], ("d4",))
    config = json.loads((out / "config.json").read_text())
    chosen = config["localization"]["tta"]["d4"]
    assert set(chosen) == {"threshold", "min_distance"} and config["localization"]["threshold"] == settings_before
    assert config["evaluation"]["tta"]["d4"]["data"]["f1@10"] == tta["d4"]["data"]["f1@10"]
    assert "precision_guard" in config["inference"]  # kept
    card = (out / "README.md").read_text()
    assert "## Test-time augmentation" in card
    assert f"| d4 | {chosen['threshold']} | {chosen['min_distance']} | data | {tta['d4']['data']['f1@5']:.3f} |" in card
    capsys.readouterr()
    assert main(["eval", str(out), str(data), "--split", "validation", "--tta", "d4", "-o", str(tmp_path / "eval_tta")]) == 0
    assert f"(tta d4): F1@5 {tta['d4']['data']['f1@5']:.3f}  F1@10 {tta['d4']['data']['f1@10']:.3f}" in capsys.readouterr().out
    assert json.loads((tmp_path / "eval_tta" / "data_summary.json").read_text())["tta"] == "d4"
    # tuning another mode later keeps the first
    tune_tta(out, "lite_unet.test", [str(data)], ("flips",))
    config = json.loads((out / "config.json").read_text())
    assert set(config["localization"]["tta"]) == set(config["evaluation"]["tta"]) == {"d4", "flips"}
    assert config["localization"]["tta"]["d4"] == chosen
    # each set's own settings, plain and for every tuned mode, beside the shared ones
    from liteunet.release import tune_per_dataset

    predicted = []
    with pytest.MonkeyPatch.context() as patch:  # the plain, d4 and flips maps were predicted above
        patch.setattr(liteunet.release, "predict_maps", lambda *a, **k: predicted.append(a) or [])
        own = tune_per_dataset(out, "lite_unet.test", [str(data)])
    assert predicted == []
    config = json.loads((out / "config.json").read_text())
    entry = config["localization"]["tuned_for"]["data"]
    assert set(entry) == {"threshold", "min_distance", "tta"} and set(entry["tta"]) == {"d4", "flips"}
    assert config["evaluation"]["tuned_for"]["data"]["f1@10"] == own["data"]["f1@10"]
    assert config["localization"]["tta"]["d4"] == chosen  # the shared settings are kept
    card = (out / "README.md").read_text()
    assert "## Settings for one kind of image" in card
    assert (f"| data | d4 | {entry['tta']['d4']['threshold']} | {entry['tta']['d4']['min_distance']} | "
            f"{own['data']['tta']['d4']['f1@5']:.3f} |") in card
    capsys.readouterr()
    assert main(["eval", str(out), str(data), "--split", "validation", "--tuned-for", "each", "--tta", "d4", "-o", str(tmp_path / "eval_own")]) == 0
    printed = capsys.readouterr().out
    assert "(tta d4, settings tuned for data)" in printed
    assert f"F1@10 {own['data']['tta']['d4']['f1@10']:.3f}" in printed
    assert json.loads((tmp_path / "eval_own" / "data_summary.json").read_text())["tuned_for"] == "data"
    # the guard with test-time augmentation: float32 runs with d4 and its settings, recorded beside the plain guard
    import liteunet.evaluate

    predicted, predict_maps = [], liteunet.evaluate.predict_maps
    with pytest.MonkeyPatch.context() as patch:  # float32 d4 maps come from the tuning above
        patch.setattr(liteunet.evaluate, "predict_maps", lambda m, *a, **k: predicted.append(m) or predict_maps(m, *a, **k))
        with_d4 = check_precisions(out, "lite_unet.test", [str(data)], ("bf16",), tta="d4")
    assert len(predicted) == 1  # the bf16 form only
    inference = json.loads((out / "config.json").read_text())["inference"]
    assert inference["precision_guard_tta"]["d4"] == json.loads(json.dumps(with_d4))
    assert set(inference["precision_guard"]) == {"bf16", "bf16_compiled"}
    assert with_d4["bf16"]["per_dataset"]["data"]["fp32_f1@10"] == pytest.approx(tta["d4"]["data"]["f1@10"])
    assert "| bf16 with d4 TTA | data |" in (out / "README.md").read_text()
    # measuring one form again replaces its record and keeps the others'
    again = check_precisions(out, "lite_unet.test", [str(data)], ("bf16",))
    inference = json.loads((out / "config.json").read_text())["inference"]
    assert set(inference["precision_guard"]) == {"bf16", "bf16_compiled"}
    assert inference["precision_guard"]["bf16"] == json.loads(json.dumps(again["bf16"]))
    assert inference["precision_guard_tta"]["d4"] == json.loads(json.dumps(with_d4))


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes_agree(tmp_path):
    data = _make_folder(tmp_path / "data", n=4)
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
        "-m", "liteunet", "train", str(data), "-o", str(out), "--epochs", "1", "--batch-size", "2",
        "--crop-size", "32", "--samples-per-epoch", "8", "--model-args", json.dumps(TINY), "--no-progress",
        "--device", "cpu",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checksums = json.loads((out / "ddp_check.json").read_text())["param_checksums"]
    assert len(checksums) == 2 and checksums[0] == pytest.approx(checksums[1], rel=1e-12)
    rows = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 2  # 8 crops / (batch 2 x 2 processes)


def test_a_teacher_with_tta_teaches_its_maps_averaged_over_mirrored_images_and_its_tta_points(tmp_path):
    """--teacher-tta: each map is the mean of the teacher's maps of the flipped images, flipped back."""
    from liteunet.evaluate import _image_tensor
    from liteunet.points import find_peaks
    from liteunet.teacher import teacher_maps, teacher_targets

    samples = load_folder(_make_folder(tmp_path / "data", n=2))
    teacher = _tiny_weights(tmp_path / "teacher", num_classes=1)
    model = liteunet.load_model(str(teacher)).eval()
    x = _image_tensor(samples[0], 3, "auto").unsqueeze(0)
    with torch.no_grad():
        views = [model(x), model(x.flip(-1)).flip(-1), model(x.flip(-2)).flip(-2), model(x.flip(-1, -2)).flip(-1, -2)]
    expected = torch.stack(views).mean(0)[0].clamp(0, 1).numpy()
    averaged = teacher_maps(str(teacher), samples, tta="flips")
    np.testing.assert_allclose(averaged[0], expected, atol=1e-5)
    assert np.abs(averaged[0] - teacher_maps(str(teacher), samples)[0]).max() > 1e-4  # a random model is not flip-symmetric
    # Its points use the threshold stored for the mode, not the plain one (which no peak reaches).
    threshold = float(np.quantile(averaged[0], 0.95))
    config = json.loads((teacher / "config.json").read_text())
    config["localization"].update(threshold=2.0, min_distance=2, tta={"flips": {"threshold": threshold, "min_distance": 2}})
    (teacher / "config.json").write_text(json.dumps(config))
    draw = functools.partial(gaussian_target, sigma=3.0)
    drawn = teacher_targets(str(teacher), samples, "points", None, draw, tta="flips")
    peaks = find_peaks(averaged[0], min_distance=2, threshold=threshold)
    assert len(peaks)
    np.testing.assert_allclose(drawn[0], draw(peaks.xy, None, (64, 64)), atol=1e-6)
    assert teacher_targets(str(teacher), samples, "points", None, draw)[0].max() == 0


def test_teacher_tta_reaches_the_targets_from_the_command_line_and_is_recorded(tmp_path, monkeypatch):
    import liteunet.train as train_module

    data = _make_folder(tmp_path / "data", n=2)
    teacher = _tiny_weights(tmp_path / "teacher", num_classes=1)
    asked = []
    real = train_module.teacher_targets
    monkeypatch.setattr(train_module, "teacher_targets", lambda *a: asked.append(a[-1]) or real(*a))
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    cfg = config_from_args(parser.parse_args(
        [str(data), "-o", str(tmp_path / "student"), "--teacher", str(teacher), "--teacher-tta", "d4", "--amp", "off"]))
    assert cfg.teacher_tta == "d4"
    train(dataclasses.replace(cfg, epochs=1, batch_size=2, crop_size=32, model_args=TINY, samples_per_epoch=2, progress=False))
    assert asked == ["d4"]
    stored = json.loads((tmp_path / "student" / "best" / "config.json").read_text())["training"]
    assert stored["teacher_tta"] == "d4"


def test_bf16_training_on_a_cpu_that_emulates_it_is_announced(monkeypatch, caplog):
    from liteunet import train as train_module

    cpu = torch.device("cpu")
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: False)
    assert train_module._amp_dtype("auto", cpu) is None  # auto stays in fp32 there
    with caplog.at_level("WARNING", logger="liteunet.train"):
        assert train_module._amp_dtype("bf16", cpu) is torch.bfloat16
    assert "emulated" in caplog.text
    caplog.clear()
    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: True)
    with caplog.at_level("WARNING", logger="liteunet.train"):
        assert train_module._amp_dtype("auto", cpu) is torch.bfloat16
        train_module._amp_dtype("bf16", cpu)
    assert "emulated" not in caplog.text
