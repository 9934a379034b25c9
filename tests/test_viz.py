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


def test_token_strip_draws_one_box_per_position_with_its_label():
    texts = ["<s>", "", "", "▁In", ":", "901", "902"]
    labels = [-100] * 5 + [901, 902]
    kinds = ["special", "image", "image", "text", "text", "action", "action"]
    patches = [None, np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), np.uint8), None, None, None, None]
    fig = viz.token_strip(texts, labels, kinds, patches=patches, per_row=4)
    ax = fig.axes[0]
    assert len(ax.patches) == 7 and len(ax.images) == 2
    shown = [t.get_text() for t in ax.texts]
    assert shown.count("-100") == 5 and "901" in shown and "902" in shown
    with pytest.raises(ValueError, match="one entry per position"):
        viz.token_strip(texts, labels[:-1], kinds)
    with pytest.raises(ValueError, match="unknown kinds"):
        viz.token_strip(texts, labels, kinds[:-1] + ["word"])


def test_episode_animation_keeps_the_last_frame_and_caps_the_count():
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(25)]
    anim = viz.episode_animation(frames, every=4)
    assert anim.steps == [0, 4, 8, 12, 16, 20, 24]
    assert anim.to_jshtml().count("frames[") >= 7  # one embedded image per kept frame
    short = viz.episode_animation(frames, max_frames=5)
    assert len(short.steps) == 5 and short.steps[-1] == 24
    short.to_jshtml()
    with pytest.raises(ValueError, match="at least one frame"):
        viz.episode_animation([])
