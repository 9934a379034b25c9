import numpy as np
import pytest

from vla_lessons import viz


def test_vla_loop_draws_with_a_real_sized_image():
    fig = viz.draw_vla_loop(np.zeros((32, 32, 3), np.uint8), "pick up the red cube", np.zeros(7))
    assert fig.axes, "the figure should have its drawing axes"


@pytest.mark.parametrize("image, action, message", [
    (np.zeros((32, 32), np.uint8), np.zeros(7), "uint8 \\(H, W, 3\\)"),
    (np.zeros((32, 32, 3), np.float32), np.zeros(7), "uint8 \\(H, W, 3\\)"),
    (np.zeros((32, 32, 3), np.uint8), np.zeros(6), "7 finite numbers"),
    (np.zeros((32, 32, 3), np.uint8), np.full(7, np.nan), "7 finite numbers"),
])
def test_vla_loop_rejects_bad_input(image, action, message):
    with pytest.raises(ValueError, match=message):
        viz.draw_vla_loop(image, "x", action)


def test_frame_strip_picks_evenly_spaced_frames_and_checks_them():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(10)]
    fig = viz.frame_strip(frames, n=4)
    assert [ax.get_title() for ax in fig.axes] == ["step 0", "step 3", "step 6", "step 9"]
    with pytest.raises(ValueError, match="at least one frame"):
        viz.frame_strip([])
    with pytest.raises(ValueError, match="uint8"):
        viz.frame_strip([np.zeros((8, 8), np.uint8)])
