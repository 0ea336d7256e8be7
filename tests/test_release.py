"""The release's measurements measure what they name."""

from __future__ import annotations

import pytest
import torch

from liteunet.release import compiling_every_shape


def _compiled_counting_shapes():
    compiled_shapes = []

    def backend(graph, example_inputs):
        compiled_shapes.append(tuple(example_inputs[0].shape))
        return graph.forward

    torch._dynamo.reset()
    return torch.compile(lambda x: x * 2 + 1, backend=backend, dynamic=False), compiled_shapes


def test_the_compiled_guard_compiles_every_image_size_instead_of_falling_back_to_eager():
    sizes = [(1, 3, 8 + k, 8) for k in range(10)]  # more sizes than Dynamo's default limit of 8
    fn, compiled_shapes = _compiled_counting_shapes()
    for size in sizes:
        fn(torch.ones(size))
    assert len(compiled_shapes) < len(sizes)  # by default the last sizes ran eagerly, unnoticed
    fn, compiled_shapes = _compiled_counting_shapes()
    with compiling_every_shape():
        for size in sizes:
            assert torch.equal(fn(torch.ones(size)), torch.full(size, 3.0))
    assert compiled_shapes == sizes


@pytest.mark.skipif(
    not hasattr(torch._dynamo.config, "fail_on_recompile_limit_hit"), reason="this torch cannot fail on the recompile limit"
)
def test_reaching_the_limit_is_an_error_not_a_silent_eager_run():
    fn, _ = _compiled_counting_shapes()
    with compiling_every_shape(limit=2), pytest.raises(Exception, match="(?i)limit"):
        for k in range(3):
            fn(torch.ones(1, 3, 8 + k, 8))


def test_a_card_of_weights_outside_the_zoo_reproduces_with_the_folder():
    from liteunet.model_card import render_model_card

    scores = {"f1@5": 0.5, "f1@10": 0.6, "mae": 1.0}
    config = {
        "card": {"load": 'liteunet.load_model("weights/candidates/c1")'},
        "localization": {
            "threshold": 0.3, "min_distance": 3, "object_size": 10.0,
            "tta": {"flips": {"threshold": 0.2, "min_distance": 2}},
            "tuned_for": {"crc": {"threshold": 0.4, "min_distance": 3}},
            "object_size_tuning": {"split": "validation", "scores": {"10": {"crc": 0.6, "selection": 0.55}}},
        },
        "evaluation": {"metrics": {"crc": scores}, "tta": {"flips": {"crc": scores}}, "tuned_for": {"crc": scores}},
    }
    card = render_model_card(config, "lite_unet.c1", evaluation=config["evaluation"]["metrics"])
    for section in ("## Test-time augmentation", "## Settings for one kind of image", "## Object size"):
        assert section in card
    assert "liteunet eval lite_unet.c1" not in card  # not a registered tag
    assert "`liteunet eval weights/candidates/c1 crc --tta flips`" in card
    assert "`liteunet eval weights/candidates/c1 crc --tuned-for each`" in card
    assert "--object-size-tune 10 --datasets crc" in card


def test_the_card_sets_each_left_out_run_beside_the_weights_own_figure_on_that_set():
    from liteunet.model_card import render_model_card

    run = {"left_out": "crc", "start": "random weights", "budget": "10 short epochs", "f1@10": 0.362, "f1@10_auto": 0.507,
           "train_command": "liteunet train mbm -o runs/loo_crc", "eval_commands": ["liteunet eval runs/loo_crc/best crc"],
           "note": "stopped by hand"}
    config = {"localization": {"threshold": 0.3, "min_distance": 3},
              "evaluation": {"metrics": {"crc": {"f1@10": 0.791}}, "leave_one_out": [run]}}
    card = render_model_card(config, "lite_unet.c1", evaluation=config["evaluation"]["metrics"])
    assert "## Zero-shot: one data set left out" in card
    assert "| crc | random weights | 10 short epochs | 0.362 | 0.507 | 0.791 |" in card
    assert "`liteunet train mbm -o runs/loo_crc`; `liteunet eval runs/loo_crc/best crc` (stopped by hand)" in card
    assert "Zero-shot" not in render_model_card({"evaluation": {"metrics": {}}}, "lite_unet.c1")

