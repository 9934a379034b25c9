"""Tests of vla_lessons.data: the LeRobot-style dataset, its statistics, and the build command."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vla_lessons import env
from vla_lessons.build import TARGETS, main
from vla_lessons.data import (BUILD_COMMAND, CorruptDatasetError, DatasetNotFoundError, DatasetWriter,
                              Episode, ExpertRecording, LeRobotStyleDataset, compute_stats,
                              episode_seed, load_dataset_dir, load_meta, read_episodes,
                              record_episode, record_expert_episodes, synthetic_episode, write_dataset)
from vla_lessons.data.layout import EPISODES_PATH, INFO_PATH, STATS_PATH, episode_path

# Three small episodes of two families; written once per test that needs a dataset.
EPISODE_ARGS = [dict(length=12, seed=1, instruction="pick up the red cube", family="pick"),
                dict(length=9, seed=2, instruction="push the blue cube left", family="push"),
                dict(length=15, seed=3, instruction="pick up the red cube", family="pick")]


def make_episodes() -> list[Episode]:
    return [synthetic_episode(image_size=24, **kw) for kw in EPISODE_ARGS]


def file_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def dataset(tmp_path) -> tuple[Path, list[Episode]]:
    episodes = make_episodes()
    return write_dataset(tmp_path / "ds", episodes, recording={"note": "test"}), episodes


# --- write / read round trip ------------------------------------------------------------------

def test_round_trip_gives_back_the_same_arrays(dataset):
    root, episodes = dataset
    back = read_episodes(root)
    assert len(back) == len(episodes)
    for a, b in zip(episodes, back):
        for name in ("images", "wrist_images", "states", "joints", "actions", "rewards", "successes"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
            assert getattr(a, name).dtype == getattr(b, name).dtype, name
        assert (a.instruction, a.family, a.seed, a.success) == (b.instruction, b.family, b.seed, b.success)


def test_load_dataset_dir_is_a_datasets_dataset_with_lerobot_columns(dataset):
    import datasets

    root, episodes = dataset
    ds = load_dataset_dir(root)
    assert isinstance(ds, datasets.Dataset)
    assert len(ds) == sum(len(ep) for ep in episodes)
    assert isinstance(ds.features["observation.images.image"], datasets.Image)
    row = ds[len(episodes[0]) + 2]  # frame 2 of episode 1
    assert (row["episode_index"], row["frame_index"], row["index"]) == (1, 2, len(episodes[0]) + 2)
    assert np.array_equal(np.asarray(row["observation.images.image"]), episodes[1].images[2])
    assert np.array_equal(np.asarray(row["action"], dtype=np.float32), episodes[1].actions[2])
    assert row["timestamp"] == pytest.approx(2 / 10)
    assert ds["next.done"].count(True) == len(episodes)
    assert load_dataset_dir(root, episodes=[2])["episode_index"] == [2] * len(episodes[2])


def test_metadata_files_follow_lerobot_v21(dataset):
    root, episodes = dataset
    meta = load_meta(root)
    info = meta.info
    assert info["codebase_version"] == "v2.1"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, 36, 2)
    assert info["splits"] == {"train": "0:3"} and info["fps"] == 10
    assert info["features"]["observation.images.image"] == {
        "dtype": "image", "shape": [24, 24, 3], "names": ["height", "width", "channel"]}
    assert info["features"]["action"]["names"] == ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]
    assert info["episodes_per_family"] == {"pick": 2, "push": 1}
    assert info["recording"] == {"note": "test"}
    assert meta.tasks == [{"task_index": 0, "task": "pick up the red cube", "family": "pick"},
                          {"task_index": 1, "task": "push the blue cube left", "family": "push"}]
    assert [e["length"] for e in meta.episodes] == [12, 9, 15]
    assert [e["task_index"] for e in meta.episodes] == [0, 1, 0]
    assert (root / episode_path(2)).is_file() and episode_path(2).startswith("data/chunk-000/")


# --- statistics -------------------------------------------------------------------------------

def test_compute_stats_equals_numpy():
    x = np.random.default_rng(0).normal(size=(501, 7)).astype(np.float32)
    s = compute_stats(x)
    x64 = x.astype(np.float64)
    np.testing.assert_array_equal(s["q01"], np.percentile(x64, 1, axis=0))
    np.testing.assert_array_equal(s["q99"], np.percentile(x64, 99, axis=0))
    np.testing.assert_array_equal(s["min"], x64.min(axis=0))
    np.testing.assert_array_equal(s["max"], x64.max(axis=0))
    np.testing.assert_allclose(s["mean"], x64.mean(axis=0), rtol=0, atol=1e-15)
    np.testing.assert_allclose(s["std"], x64.std(axis=0), rtol=1e-15)
    assert s["count"].tolist() == [501]
    assert (s["q01"] > s["min"]).all() and (s["q99"] < s["max"]).all()


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros(5), np.array([[1.0, np.nan]])])
def test_compute_stats_rejects_bad_input(bad):
    with pytest.raises(ValueError, match="statistics need"):
        compute_stats(bad)


def test_stats_json_matches_numpy_on_the_stored_data(dataset):
    root, _ = dataset
    ds = load_dataset_dir(root)
    stats = json.loads((root / STATS_PATH).read_text())
    for key in ("action", "observation.state", "observation.joints"):
        data = np.asarray(ds[key], dtype=np.float32).astype(np.float64)
        assert stats[key]["q01"] == np.quantile(data, 0.01, axis=0).tolist()
        assert stats[key]["q99"] == np.quantile(data, 0.99, axis=0).tolist()
        assert stats[key]["min"] == data.min(axis=0).tolist()
        assert stats[key]["max"] == data.max(axis=0).tolist()
        np.testing.assert_allclose(stats[key]["mean"], data.mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(stats[key]["std"], data.std(axis=0), atol=1e-12)
        assert stats[key]["count"] == [len(ds)]


# --- determinism ------------------------------------------------------------------------------

def test_rebuild_is_byte_identical_in_process_and_across_processes(tmp_path):
    first = file_hashes(write_dataset(tmp_path / "a", make_episodes()))
    again = file_hashes(write_dataset(tmp_path / "b", make_episodes()))
    assert first == again
    assert any(name.endswith(".parquet") for name in first) and "meta/info.json" in first
    code = ("import sys, json; from vla_lessons.data import synthetic_episode, write_dataset; "
            "write_dataset(sys.argv[1], [synthetic_episode(image_size=24, **kw) "
            "for kw in json.loads(sys.argv[2])])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c"), json.dumps(EPISODE_ARGS)],
                   check=True, cwd=env.REPO_ROOT, env={**os.environ, "PYTHONHASHSEED": "123"})
    assert file_hashes(tmp_path / "c") == first


def test_overwrite_replaces_a_dataset_but_never_another_folder(tmp_path):
    root = write_dataset(tmp_path / "ds", make_episodes()[:1])
    with pytest.raises(FileExistsError):
        write_dataset(root, make_episodes())
    write_dataset(root, make_episodes(), overwrite=True)
    assert load_meta(root).total_episodes == 3
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not a dataset folder"):
        write_dataset(other, make_episodes(), overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"


# --- missing and corrupt datasets -------------------------------------------------------------

def test_missing_dataset_names_the_folder_and_the_build_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        LeRobotStyleDataset(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(err.value) and BUILD_COMMAND in str(err.value)


def test_missing_episode_file_names_the_file(dataset):
    root, _ = dataset
    (root / episode_path(1)).unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset_dir(root)
    assert episode_path(1) in str(err.value) and BUILD_COMMAND in str(err.value)


def test_truncated_parquet_is_reported_as_corrupt(dataset):
    root, _ = dataset
    path = root / episode_path(0)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset_dir(root)
    assert str(path) in str(err.value) and BUILD_COMMAND in str(err.value)


@pytest.mark.parametrize("name, text, problem", [
    (INFO_PATH, "{not json", "not valid JSON"),
    (INFO_PATH, '{"fps": 10}', "expected a JSON object with the keys"),
    (STATS_PATH, '{"action": {"min": [0]}}', "lack"),
    (EPISODES_PATH, '{"episode_index": 0, "length": 12}\n', "expected episodes 0..2"),
])
def test_corrupt_metadata_names_the_file(dataset, name, text, problem):
    root, _ = dataset
    (root / name).write_text(text)
    with pytest.raises(CorruptDatasetError, match=problem) as err:
        load_meta(root)
    assert str(root / name) in str(err.value) and BUILD_COMMAND in str(err.value)


def test_parquet_with_wrong_rows_is_corrupt(dataset, tmp_path):
    root, episodes = dataset
    other = write_dataset(tmp_path / "other", [synthetic_episode(length=4, image_size=24)])
    (root / episode_path(0)).write_bytes((other / episode_path(0)).read_bytes())
    with pytest.raises(CorruptDatasetError, match="expected 12 rows of episode 0"):
        load_dataset_dir(root)


# --- bad input to the writer ------------------------------------------------------------------

def _fields(**change):
    ep = synthetic_episode(length=5, image_size=8)
    fields = dict(images=ep.images, wrist_images=ep.wrist_images, states=ep.states, joints=ep.joints,
                  actions=ep.actions, instruction="pick", family="pick", success=True)
    fields.update(change)
    return fields


@pytest.mark.parametrize("change, message", [
    (dict(images=[np.zeros((8, 8, 3), np.uint8)] * 4 + [np.zeros((8, 9, 3), np.uint8)]),
     r"images is ragged: step 4 has shape \(8, 9, 3\), expected \(8, 8, 3\)"),
    (dict(actions=np.full((5, 7), np.nan, np.float32)), "actions must be finite, but step 0"),
    (dict(states=np.full((5, 8), np.inf)), "states must be finite"),
    (dict(images=np.zeros((5, 8, 8, 3), np.float32)), "must have dtype uint8"),
    (dict(images=np.zeros((5, 8, 8, 4), np.uint8)), r"must have shape \(H, W, 3\)"),
    (dict(images=np.zeros((5, 8, 8), np.uint8)), r"must have shape \(T, H, W, 3\)"),
    (dict(wrist_images=np.zeros((5, 4, 4, 3), np.uint8)), "same"),
    (dict(actions=np.zeros((4, 7), np.float32)), "actions has 4 steps but images has 5"),
    (dict(actions=np.zeros((5, 7), dtype=object)), "real numbers"),
    (dict(images=np.zeros((0, 8, 8, 3), np.uint8)), "images is empty"),
    (dict(actions=[]), "actions is empty"),
    (dict(instruction=""), "instruction must be a non-empty string"),
    (dict(success=None), "give success"),
    (dict(successes=np.array([0, 0, 0, 0, 2])), "successes must be booleans"),
])
def test_episode_rejects_bad_arrays(change, message):
    with pytest.raises(ValueError, match=message):
        Episode(**_fields(**change))


def test_writer_rejects_inconsistent_episodes(tmp_path):
    small = synthetic_episode(image_size=8)
    with pytest.raises(ValueError, match="one dataset has one frame layout"):
        write_dataset(tmp_path / "a", [small, synthetic_episode(image_size=16)])
    with pytest.raises(ValueError, match="at least one episode"):
        write_dataset(tmp_path / "b", [])
    with pytest.raises(ValueError, match="recording must hold JSON values"):
        write_dataset(tmp_path / "c", [small], recording={"bad": np.float32(1.0)})
    with pytest.raises(TypeError, match="vla_lessons.data.Episode"):
        write_dataset(tmp_path / "d", [{"images": small.images}])
    with pytest.raises(ValueError, match="fps must be a positive int"):
        write_dataset(tmp_path / "e", [small], fps=0)
    assert not any(tmp_path.iterdir())  # nothing half-written left behind


def test_dataset_writer_streams_episodes_and_leaves_nothing_on_error(tmp_path):
    with DatasetWriter(tmp_path / "ds", fps=5) as writer:
        assert [writer.add_episode(ep) for ep in make_episodes()] == [0, 1, 2]
        assert not (tmp_path / "ds").exists()  # nothing at root before finish
        root = writer.finish({"source": "stream"})
    assert file_hashes(root) != {} and load_meta(root).fps == 5
    with pytest.raises(RuntimeError, match="finished"):
        writer.add_episode(make_episodes()[0])
    with pytest.raises(KeyboardInterrupt):
        with DatasetWriter(tmp_path / "other") as writer:
            writer.add_episode(make_episodes()[0])
            raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


# --- PyTorch samples --------------------------------------------------------------------------

def test_torch_samples_have_documented_shapes_and_dtypes(dataset):
    root, episodes = dataset
    ds = LeRobotStyleDataset(root)
    assert len(ds) == 36 and ds.num_episodes == 3 and ds.fps == 10
    item = ds[13]  # episode 1, frame 1
    assert item["observation.images.image"].shape == (3, 24, 24)
    assert item["observation.images.image"].dtype == torch.float32
    assert 0.0 <= item["observation.images.image"].min() and item["observation.images.image"].max() <= 1.0
    assert item["observation.state"].shape == (8,) and item["observation.state"].dtype == torch.float32
    assert item["observation.joints"].shape == (6,)
    assert item["action"].shape == (7,) and item["action"].dtype == torch.float32
    assert item["episode_index"].dtype == torch.int64 and int(item["episode_index"]) == 1
    assert item["task"] == "push the blue cube left"
    expected = torch.from_numpy(episodes[1].images[1]).permute(2, 0, 1).float() / 255
    assert torch.equal(item["observation.images.image"], expected)
    raw = LeRobotStyleDataset(root, image_dtype="uint8")[13]["observation.images.wrist_image"]
    assert raw.dtype == torch.uint8
    assert torch.equal(raw.permute(1, 2, 0), torch.from_numpy(episodes[1].wrist_images[1]))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=5)))
    assert batch["observation.images.image"].shape == (5, 3, 24, 24) and len(batch["task"]) == 5
    assert ds.stats["action"]["q01"].shape == (7,) and ds.tasks[0]["family"] == "pick"


def test_action_chunks_pad_with_the_last_action_at_the_episode_end(dataset):
    root, episodes = dataset
    ds = LeRobotStyleDataset(root, action_horizon=4, episodes=[1, 2])
    item = ds[7]  # episode 1 has 9 frames: frames 7, 8, then two pads
    assert item["action"].shape == (4, 7)
    assert item["action_is_pad"].tolist() == [False, False, True, True]
    np.testing.assert_array_equal(item["action"].numpy(), episodes[1].actions[[7, 8, 8, 8]])
    assert len(ds) == 9 + 15 and int(ds[9]["episode_index"]) == 2
    with pytest.raises(ValueError, match="action_horizon"):
        LeRobotStyleDataset(root, action_horizon=0)
    with pytest.raises(ValueError, match="episodes must be"):
        LeRobotStyleDataset(root, episodes=[3])


# --- recording the expert ---------------------------------------------------------------------

class FakeTabletopEnv:
    """The sim's interface with tiny images: the expert 'fails' every seed that is 2 mod 5."""

    def __init__(self, image_size: int = 8):
        self.size = image_size

    def _obs(self):
        image = np.full((self.size, self.size, 3), (self.seed * 7 + self.t) % 256, np.uint8)
        state = np.full(8, self.t / 10, np.float32)
        return {"image": image, "wrist_image": image[::-1].copy(), "state": state,
                "joints": np.zeros(6, np.float32), "instruction": f"{self.family} the cube"}

    def reset(self, seed, options):
        self.seed, self.t, self.family = seed, 0, options["task"]
        return self._obs(), {"success": False, "n_clipped": 0}

    def step(self, action):
        assert action.shape == (7,) and action.dtype == np.float32
        self.t += 1
        success = self.t >= 3 + self.seed % 3 and self.seed % 5 != 2
        return self._obs(), float(success), success, self.t >= 8, {"success": success, "n_clipped": 1}

    def close(self):
        pass


class FakeExpert:
    def __init__(self, env):
        self.env = env

    def act(self, obs):
        return np.r_[np.full(6, 0.01), 1.0]


def test_recorder_keeps_successes_and_counts_the_discarded():
    episodes, recording = record_expert_episodes(FakeTabletopEnv(), FakeExpert, families=("pick", "push"),
                                                 episodes_per_family=3, base_seed=10)
    assert [ep.family for ep in episodes] == ["pick", "push"] * 3  # interleaved
    assert all(ep.success for ep in episodes)
    # pick seeds 10, 11, 12 (fails: 12 % 5 == 2), 13; push seeds 100010, 100011, 100012 (fails), 100013
    assert [ep.seed for ep in episodes[::2]] == [10, 11, 13]
    assert episode_seed(10, 1, 3) == 100_013
    assert recording["attempted"] == {"pick": 4, "push": 4} and recording["total_discarded"] == 2
    assert recording["policy"] == "FakeExpert" and recording["kept_only_successful"]
    first = episodes[0]  # seed 10: success after 4 steps
    assert len(first) == 4 and first.successes.tolist() == [False, False, False, True]
    assert first.rewards.tolist() == [0, 0, 0, 1] and first.metadata == {"n_clipped": 1}
    assert first.instruction == "pick the cube"
    assert first.states[:, 0].tolist() == pytest.approx([0, .1, .2, .3])


def test_recording_can_keep_failed_episodes():
    recording = ExpertRecording(FakeTabletopEnv(), FakeExpert, families=("pick",),
                                episodes_per_family=3, base_seed=0, keep_failed=True)
    episodes = list(recording)
    assert [ep.seed for ep in episodes] == [0, 1, 2]
    assert [ep.success for ep in episodes] == [True, True, False]
    assert recording.summary["discarded"] == {"pick": 0} and not recording.summary["kept_only_successful"]
    assert len(episodes[2]) == 8  # the failed episode ran until the env truncated it


def test_recorder_gives_up_when_the_expert_keeps_failing():
    class Hopeless(FakeTabletopEnv):
        def step(self, action):
            obs, _, _, _, info = super().step(action)
            return obs, 0.0, False, self.t >= 4, {"success": False}

    with pytest.raises(RuntimeError, match="succeeded in only 0 of 5"):
        record_expert_episodes(Hopeless(), FakeExpert, families=("pick",), episodes_per_family=1)


def test_dart_recording_executes_perturbed_actions_and_keeps_the_clean_ones_as_labels():
    from gymnasium import spaces

    class Logging(FakeTabletopEnv):
        action_space = spaces.Box(np.array([-0.03] * 3 + [-0.3] * 3 + [0.0], np.float32),
                                  np.array([0.03] * 3 + [0.3] * 3 + [1.0], np.float32))

        def __init__(self):
            super().__init__()
            self.executed = []

        def step(self, action):
            self.executed.append(action.copy())
            return super().step(action)

    def run(seed, perturb):
        sim = Logging()
        episode = record_episode(sim, FakeExpert(sim), seed=seed, family="pick", perturb=perturb)
        return episode, np.array(sim.executed)

    episode, executed = run(10, 0.02)
    clean = np.r_[np.full(6, 0.01), 1.0]
    np.testing.assert_array_equal(episode.actions, np.tile(clean, (len(episode), 1)).astype(np.float32))
    assert (executed[:, :3] != np.float32(0.01)).all(), "the position deltas are perturbed"
    np.testing.assert_array_equal(executed[:, 3:], episode.actions[:, 3:])  # rotation and gripper are not
    assert (np.abs(executed) <= Logging.action_space.high).all(), "perturbed actions stay within the limits"
    np.testing.assert_array_equal(run(10, 0.02)[1], executed)  # seeded by the episode's seed
    assert not np.array_equal(run(11, 0.02)[1][:2], executed[:2])
    np.testing.assert_array_equal(run(10, 0.0)[1], episode.actions)  # no noise: the expert's actions
    with pytest.raises(ValueError, match="perturb"):
        run(10, -0.01)
    recording = ExpertRecording(Logging(), FakeExpert, families=("pick",), episodes_per_family=1, perturb=0.02)
    list(recording)
    assert recording.summary["perturb"] == 0.02


# --- the build command ------------------------------------------------------------------------

def test_build_command_lists_its_targets(capsys):
    assert main(["--list"]) == 0
    assert "data" in capsys.readouterr().out and "data" in TARGETS
    with pytest.raises(SystemExit):
        main(["no-such-target"])
    with pytest.raises(ValueError, match="unknown dataset"):
        TARGETS["data"].build(["no-such-dataset"])


# --- the real simulator and the committed dataset ---------------------------------------------

def test_a_small_sim_build_is_byte_identical_and_matches_the_committed_dataset(tmp_path):
    """One expert episode per family, recorded twice with the real simulator.

    With the lesson recipe's seeds these are episodes 0, 1, 2 of the committed dataset, so their
    parquet files must equal the committed ones: a change in the simulator or the writer that
    changes the data makes this fail until the dataset is rebuilt.
    """
    from vla_lessons.data.recipes import DatasetRecipe, build_dataset, course_recipes

    lessons = course_recipes()["tabletop_lessons"]
    tiny = DatasetRecipe("tiny", episodes_per_family=1, image_size=lessons.image_size,
                         base_seed=lessons.base_seed)
    first = build_dataset(tiny, root=tmp_path / "a")
    build_dataset(tiny, root=tmp_path / "b")
    assert file_hashes(tmp_path / "a") == file_hashes(tmp_path / "b")
    assert first["episodes"] == 3 and first["recording"]["total_attempted"] >= 3
    meta = load_meta(tmp_path / "a")
    assert [e["family"] for e in meta.episodes] == ["pick", "place", "push"]
    assert meta.features["observation.state"]["names"][:3] == ["ee_x", "ee_y", "ee_z"]
    assert meta.fps == 10 and meta.features["observation.images.image"]["shape"] == [96, 96, 3]
    for i in range(3):
        built = (tmp_path / "a" / episode_path(i)).read_bytes()
        assert built == (lessons.root / episode_path(i)).read_bytes(), (
            f"{lessons.root} is stale: run `{BUILD_COMMAND} --only tabletop_lessons`")


def test_committed_lesson_dataset_is_complete_and_its_stats_match_numpy():
    from vla_lessons.data.recipes import course_dataset_path

    root = course_dataset_path("tabletop_lessons")
    ds = LeRobotStyleDataset(root)
    info = ds.meta.info
    assert info["episodes_per_family"] == {"pick": 10, "place": 10, "push": 10}
    assert info["recording"]["kept_only_successful"] and all(e["success"] for e in ds.meta.episodes)
    assert len(ds) == info["total_frames"] and ds[0]["observation.images.image"].shape == (3, 96, 96)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert size < 8e6, f"the committed dataset grew to {size / 1e6:.1f} MB"
    actions = np.asarray(ds.hf_dataset["action"], dtype=np.float32).astype(np.float64)
    np.testing.assert_array_equal(ds.stats["action"]["q01"], np.percentile(actions, 1, axis=0))
    np.testing.assert_array_equal(ds.stats["action"]["q99"], np.percentile(actions, 99, axis=0))
