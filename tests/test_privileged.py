"""The privileged ceiling (lesson 06): ground-truth features, the MLP policy and its two heads, the rollout."""

import numpy as np
import pytest
import torch

from vla_lessons import env as course_env
from vla_lessons.deploy.evaluate import rollout_batch
from vla_lessons.sim import TabletopEnv
from vla_lessons.train.finetune import load_action_frames
from vla_lessons.train.privileged import (N_FEATURES, PrivilegedConfig, PrivilegedPolicy, episode_features,
                                          load_privileged, privileged_features, privileged_policy,
                                          train_privileged)
from vla_lessons.data.recipes import course_dataset_path


@pytest.fixture(scope="module")
def lessons():
    root = course_dataset_path("tabletop_lessons")
    frames = load_action_frames(root, episodes=list(range(6)), wrist=False)
    return frames, episode_features(root)[:6]


def test_features_are_the_task_objects_ground_truth():
    course_env.setup_headless_gl()
    sim = TabletopEnv(render_images=False)
    with pytest.raises(ValueError, match="reset"):
        privileged_features(sim)
    try:
        for family in ("pick", "place", "push"):
            sim.reset(seed=7, options={"task": family})
            f = privileged_features(sim)
            target = next(o for o in sim.scene_objects() if o.is_target and o.kind == "object")
            assert f.shape == (N_FEATURES,) and f.dtype == np.float32
            np.testing.assert_allclose(f[:2], target.position[:2], atol=1e-6)
            assert f[4] ** 2 + f[5] ** 2 == pytest.approx(1.0, abs=1e-5)
            assert f[6:9].tolist() == [float(family == x) for x in ("pick", "place", "push")]
            assert f[9:12].sum() == 1.0
            assert (f[2:4] != 0).any() == (family == "place")  # only a place task has a receptacle
            assert f[12:].sum() == float(family == "push")  # only a push has a direction
    finally:
        sim.close()


def test_episode_features_follow_the_recorded_seeds(lessons):
    frames, features = lessons
    assert features.shape == (6, N_FEATURES)
    families = [frames.families[int(np.flatnonzero(frames.episodes == e)[0])] for e in range(6)]
    assert [("pick", "place", "push")[int(np.argmax(row[6:9]))] for row in features] == families


@pytest.mark.parametrize("config", [PrivilegedConfig("regression", steps=150),
                                    PrivilegedConfig("bins", steps=150, label_sigma=2.0),
                                    PrivilegedConfig("regression", steps=150, loss="l1", chunk_size=3),
                                    PrivilegedConfig("bins", steps=150, chunk_size=3)])
def test_training_fits_the_steps_and_acts_within_limits(lessons, config):
    frames, features = lessons
    policy, history = train_privileged(frames, features, config)
    assert history[-1]["loss"] < history[0]["loss"]
    chunks = policy.act_chunk(frames.states[:5], features[frames.episodes[:5]])
    actions = policy.act(frames.states[:5], features[frames.episodes[:5]])
    assert chunks.shape == (5, config.chunk_size, 7)
    np.testing.assert_array_equal(actions, chunks[:, 0])
    assert privileged_policy(policy).chunk_size == config.chunk_size
    assert actions.shape == (5, 7) and np.isfinite(actions).all()
    assert set(np.unique(actions[:, -1])) <= {0.0, 1.0}
    low, high = policy.stats["y_low"], policy.stats["y_high"]
    assert ((actions[:, :6] >= low[:6] - 1e-9) & (actions[:, :6] <= high[:6] + 1e-9)).all()
    with pytest.raises(ValueError, match="P \\+ F"):
        policy.act(frames.states[:2], features[:2, :5])
    bad = frames.states[:2].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        policy.act(bad, features[:2])


def test_bad_settings_are_refused(lessons):
    frames, features = lessons
    with pytest.raises(ValueError, match="head"):
        PrivilegedConfig("tokens")
    with pytest.raises(ValueError, match="needs head='bins'"):
        PrivilegedConfig("regression", label_sigma=1.0)
    with pytest.raises(ValueError, match="loss must be"):
        PrivilegedConfig("bins", loss="l1")
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        PrivilegedConfig(chunk_size=0)
    with pytest.raises(ValueError, match="a row for each"):
        train_privileged(frames, features[:2], PrivilegedConfig(steps=1))
    with pytest.raises(ValueError, match="PrivilegedPolicy"):
        privileged_policy(torch.nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match="no privileged-policy results"):
        load_privileged("/nonexistent/privileged.json")


def test_the_rollout_hands_the_features_read_at_reset():
    seen = []

    def spy(images, instructions, states=None, *, privileged=None):
        seen.append(privileged.copy())
        return np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (len(states), 1))

    spy.needs_state = spy.needs_privileged = True
    course_env.setup_headless_gl()
    sim = TabletopEnv(render_images=False)
    try:
        sim.reset(seed=10_000_003, options={"task": "push"})
        expected = privileged_features(sim)
    finally:
        sim.close()
    result = rollout_batch(spy, ["push"], [10_000_003])[0]
    assert result.steps == len(seen) > 1 and not result.success
    for row in seen:  # the features read at reset, at every step
        np.testing.assert_array_equal(row, expected[None])
