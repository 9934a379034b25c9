"""Co-fine-tuning (lesson 06): the table of VQA ratio against held-out actions and VQA retention."""

import json

import numpy as np
import pytest
import torch

from vla_lessons.model.text_tokenizer import train_text_tokenizer
from vla_lessons.model.vla import vla_from_vlm
from vla_lessons.model.vlm import build_vlm
from vla_lessons.model.vqa import VQAData, VQASample
from vla_lessons.train.cofinetune import (CofinetuneSizes, build_cofinetune, cofinetune_table, fresh_copy,
                                          load_cofinetune, print_table)
from vla_lessons.train.finetune import ActionFrames

CORPUS = ["pick up the red cube", "push the green cylinder left", "what action should the robot take to",
          "what colour is the cube?", "red", "blue", "how many objects are on the table?", "two"] * 5
STATS = {"action": {"q01": [-0.02] * 6 + [0.0], "q99": [0.02] * 6 + [1.0]}}
SIZE = 28


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    tok = train_text_tokenizer(CORPUS, vocab_size=700)
    vlm = build_vlm(tok, seed=0, siglip_config=dict(image_size=SIZE), dino_config=dict(image_size=SIZE),
                    num_hidden_layers=1)
    return vla_from_vlm(vlm, tok, {"tabletop": STATS})


def _frames(n, seed):
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.02, 0.02, (n, 7)).astype(np.float32)
    actions[:, 6] = rng.integers(0, 2, n)
    return ActionFrames(rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8),
                        ["pick up the red cube", "push the green cylinder left"] * (n // 2), actions,
                        np.arange(n) // 4, ["pick", "push"] * (n // 2))


def _vqa(n, seed, answer="red"):
    rng = np.random.default_rng(seed)
    samples = [VQASample(i, "colour", "what colour is the cube?", answer) for i in range(n)]
    samples += [VQASample(i, "count", "how many objects are on the table?", "two") for i in range(n)]
    return VQAData(rng.integers(0, 255, (n, SIZE, SIZE, 3), dtype=np.uint8), list(range(n)), [[]] * n,
                   np.zeros((n, 3)), samples)


def _run(base, ratios, vqa_train, steps=4):
    return cofinetune_table(ratios, steps, base=base, train=_frames(16, 0), heldout=_frames(8, 1),
                            vqa_train=vqa_train, vqa_heldout=_vqa(4, 2), batch_size=4, lr=1e-3, log_every=2)


def test_table_has_one_row_per_ratio_with_actions_vqa_and_retention(base):
    before = {k: v.clone() for k, v in base.state_dict().items()}
    table = _run(base, (0.0, 0.5), _vqa(6, 3))
    assert table["ratios"] == [0.0, 0.5] and [r["vqa_ratio"] for r in table["rows"]] == [0.0, 0.5]
    assert set(table["vlm"]["vqa"]) == {"colour", "count", "all"}
    for row in table["rows"]:
        assert set(row) == {"vqa_ratio", "actions", "vqa", "vqa_retention", "history", "seconds"}
        assert set(row["actions"]) == {"loss", "action_accuracy", "l1"}
        assert 0.0 <= row["actions"]["action_accuracy"] <= 1.0 and 0.0 <= row["vqa"]["all"] <= 1.0
        assert [h["step"] for h in row["history"]] == [2, 4]
    assert "vqa_loss" not in table["rows"][0]["history"][0]  # ratio 0 trains on robot steps only
    assert "vqa_loss" in table["rows"][1]["history"][0]
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items()), "base must not change"
    json.dumps(table)  # the table is plain JSON


def test_ratio_zero_never_reads_vqa_data(base):
    with_vqa = _run(base, (0.0,), _vqa(6, 3))
    without = _run(base, (0.0,), None)
    for key in ("actions", "vqa", "history"):
        assert with_vqa["rows"][0][key] == without["rows"][0][key]
    with pytest.raises(ValueError, match="pass vqa_train"):
        _run(base, (0.0, 0.25), None)


@pytest.mark.parametrize("ratios, error, message", [
    ((1.0,), ValueError, r"in \[0, 1\)"),
    ((-0.1,), ValueError, r"in \[0, 1\)"),
    ((float("nan"),), ValueError, r"in \[0, 1\)"),
    ((), ValueError, "non-empty"),
    ((0.0, 0.0), ValueError, "distinct"),
    (("half",), TypeError, "number"),
])
def test_bad_ratios_are_clear_errors(base, ratios, error, message):
    with pytest.raises(error, match=message):
        _run(base, ratios, _vqa(6, 3))


def test_bad_inputs_are_clear_errors(base):
    with pytest.raises(TypeError, match="PrismaticVLA"):
        cofinetune_table((0.0,), 2, base=object(), train=_frames(8, 0), heldout=_frames(8, 1),
                         vqa_heldout=_vqa(4, 2))
    with pytest.raises(ValueError, match="unknown unnorm_key"):
        cofinetune_table((0.0,), 2, base=base, train=_frames(8, 0), heldout=_frames(8, 1),
                         vqa_heldout=_vqa(4, 2), unnorm_key="bridge_orig")
    with pytest.raises(ValueError, match="steps"):
        cofinetune_table((0.0,), 0, base=base, train=_frames(8, 0), heldout=_frames(8, 1),
                         vqa_heldout=_vqa(4, 2))


def test_fresh_copy_is_independent(base):
    copy = fresh_copy(base)
    with torch.no_grad():
        next(copy.parameters()).add_(1.0)
    assert not torch.equal(next(copy.parameters()), next(base.parameters()))
    assert copy.config.norm_stats == base.config.norm_stats and copy.tokenizer is base.tokenizer


def test_print_table_and_load(tmp_path, capsys):
    table = {"vlm": {"vqa": {"all": 0.5}},
             "rows": [{"vqa_ratio": 0.25, "actions": {"action_accuracy": 0.4, "l1": 0.1},
                       "vqa": {"all": 0.25}, "vqa_retention": 0.5}]}
    print_table(table)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].split() == ["vqa_ratio", "0.25", "0.400", "0.1000", "0.250", "0.50"]
    (tmp_path / "t.json").write_text(json.dumps(table))
    assert load_cofinetune(tmp_path / "t.json") == table
    with pytest.raises(FileNotFoundError, match="no co-fine-tuning results"):
        load_cofinetune(tmp_path / "missing.json")


def test_build_reports_a_missing_dataset(tmp_path, monkeypatch):
    from vla_lessons import env

    monkeypatch.setattr(env, "BUILD_DIR", tmp_path / "nothing")
    sizes = CofinetuneSizes("tabletop_train", steps=1, batch_size=2, vqa_train_scenes=1, vqa_heldout_scenes=1)
    with pytest.raises(ValueError, match="not recorded"):
        build_cofinetune(full=True, out_path=tmp_path / "c.json", sizes=sizes, progress=False)
