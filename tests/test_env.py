import numpy as np
import pytest
import torch

from vla_lessons import env


def test_fast_mode_is_default(monkeypatch):
    monkeypatch.delenv("VLA_FULL", raising=False)
    assert env.full_mode() is False
    assert env.pick(fast=3, full=300) == 3


def test_full_mode_switch(monkeypatch):
    monkeypatch.setenv("VLA_FULL", "1")
    assert env.full_mode() is True
    assert env.pick(fast=3, full=300) == 300


def test_bad_mode_value_is_an_error(monkeypatch):
    monkeypatch.setenv("VLA_FULL", "ful")
    with pytest.raises(ValueError, match="VLA_FULL must be 0 or 1"):
        env.full_mode()


def test_seed_everything_makes_numpy_and_torch_repeat():
    env.seed_everything(7)
    a = (np.random.rand(3), torch.rand(3))
    env.seed_everything(7)
    b = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_seed_must_be_a_non_negative_int(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        env.seed_everything(bad)


def test_device_is_cpu_here_and_rejects_unknown_names():
    assert env.device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="one of 'cpu', 'cuda', 'mps'"):
        env.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            env.device("cuda")


def test_paths_point_into_the_repository():
    assert (env.REPO_ROOT / "vla_lessons" / "env.py").exists()
    assert env.DATA_DIR == env.REPO_ROOT / "data" or "VLA_DATA_DIR" in __import__("os").environ


def test_versions_reports_torch():
    assert env.versions()["torch"].startswith("2.13.0")
