"""The mini Prismatic VLM: tokenizer, scene questions, model (save/load, masking, decoding), training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla_lessons.model import text_tokenizer as tt
from vla_lessons.model import train_vlm as tv
from vla_lessons.model import vlm as V
from vla_lessons.model import vqa as Q

#: 28 px towers (2 x 2 = 4 patches) and a 2-layer Llama: the architecture at toy size.
TINY_TOWER = dict(image_size=28, hidden_size=32, num_attention_heads=2, num_hidden_layers=2)
TINY_LLAMA = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  num_key_value_heads=2)
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220), "yellow": (230, 220, 30)}


@pytest.fixture(scope="module")
def tokenizer():
    corpus = tv.instruction_prompts("train") + [
        "In: what colour is the cube?\nOut: red", "In: is the red cube left of the plate?\nOut: yes",
        "In: how many objects are on the table?\nOut: three", "In: what is on the table?\nOut: a red cube"]
    return tt.train_text_tokenizer(corpus)


def tiny_vlm(tokenizer, seed=0):
    return V.build_vlm(tokenizer, seed=seed, siglip_config=dict(TINY_TOWER, intermediate_size=64),
                       dino_config=dict(TINY_TOWER), **TINY_LLAMA)


@pytest.fixture(scope="module")
def model(tokenizer):
    return tiny_vlm(tokenizer)


def squares(n, seed=0):
    """``n`` 28 px grey images with one coloured square each, and the question about its colour."""
    rng = np.random.default_rng(seed)
    names = rng.choice(list(COLOURS), n)
    images = np.full((n, 28, 28, 3), 100, dtype=np.uint8)
    for i, name in enumerate(names):
        x, y = rng.integers(0, 16, 2)
        images[i, y:y + 12, x:x + 12] = COLOURS[name]
    samples = [Q.VQASample(i, "colour", "what colour is the cube?", str(c)) for i, c in enumerate(names)]
    return Q.VQAData(images, list(range(n)), [[] for _ in range(n)], np.zeros((n, 3)), samples)


# ----------------------------------------------------------------------------- tokenizer


def test_reserved_block_is_the_last_256_ids_and_never_emitted(tokenizer):
    block = tt.reserved_ids(tokenizer)
    assert len(tokenizer) == 1024 and block == range(768, 1024)
    assert tokenizer.convert_ids_to_tokens([0, 1, 2, 3]) == ["<unk>", "<s>", "</s>", "<pad>"]
    assert tokenizer.convert_ids_to_tokens([768, 1023]) == ["<reserved_000>", "<reserved_255>"]
    rng = np.random.default_rng(0)
    texts = tv.instruction_prompts("train") + tv.instruction_prompts("heldout") + [
        "<reserved_000> <reserved_255>", "".join(chr(int(c)) for c in rng.integers(32, 0x2FFF, 400))]
    emitted = {i for t in texts for i in tokenizer(t)["input_ids"]}
    assert max(emitted) < block.start


def test_unknown_words_and_characters_still_tokenize(tokenizer):
    for text in ["could you lift up the red cube", "nudge the blue ball toward the robot",
                 "take hold of the café cube 🙂 and raise it"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.unk_token_id not in ids
        assert tokenizer.decode(ids) == text
    assert len(tokenizer("nudge", add_special_tokens=False)["input_ids"]) > 1  # not in the corpus: pieces


def test_tokenizer_is_deterministic_and_round_trips(tokenizer, tmp_path):
    corpus = ["In: what colour is the cube?\nOut: red"] * 3 + tv.instruction_prompts("train")[:50]
    a, b = tt.train_text_tokenizer(corpus), tt.train_text_tokenizer(corpus)
    assert a.get_vocab() == b.get_vocab()
    tt.save_text_tokenizer(tokenizer, tmp_path)
    loaded = tt.load_text_tokenizer(tmp_path)
    text = "In: What action should the robot take to pick up the red cube?\nOut:"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert tt.reserved_ids(loaded) == tt.reserved_ids(tokenizer)


def test_tokenizer_bad_input():
    with pytest.raises(ValueError, match="corpus"):
        tt.train_text_tokenizer([])
    with pytest.raises(ValueError, match="vocab_size"):
        tt.train_text_tokenizer(["a b c"], vocab_size=300)


# ----------------------------------------------------------------------------- scene questions


def test_questions_follow_the_ground_truth():
    right = np.array([1.0, 0.0])
    things = [Q.Thing("red", "cube", "object", (0.10, 0.0, 0.02)),
              Q.Thing("blue", "ball", "object", (0.30, 0.0, 0.02)),
              Q.Thing("white", "plate", "receptacle", (0.20, 0.2, 0.0))]
    for seed in range(20):
        out = {s.kind: s for s in Q.questions_for_scene(things, (0.29, 0.0, 0.1), np.random.default_rng(seed),
                                                       right=right)}
        assert out["caption"].answer.startswith("a red cube left of a blue ball, and a white plate")
        assert out["colour"].answer == {"what colour is the cube?": "red", "what colour is the ball?": "blue"}[
            out["colour"].question]
        assert out["nearest"].answer == "blue ball"
        assert out["count"].answer in ("two", "one", "zero")
        q, a = out["left_right"].question, out["left_right"].answer
        if q == "is the red cube left of the blue ball?":
            assert a == "yes"
        if q == "is the blue ball left of the red cube?":
            assert a == "no"


def test_rendered_scenes_are_seeded_and_splits_differ():
    a, b = Q.vqa_dataset(2, "train"), Q.vqa_dataset(2, "train")
    assert np.array_equal(a.images, b.images) and a.samples == b.samples
    h = Q.vqa_dataset(2, "heldout")
    assert set(a.seeds).isdisjoint(h.seeds)
    assert a.images.shape == (2, 96, 96, 3) and a.kind_counts()["caption"] == 2
    with pytest.raises(ValueError, match="split"):
        Q.vqa_dataset(1, "test")


def test_majority_answer_baseline():
    data = squares(6)
    guess = Q.majority_answers(data)
    answers = [s.answer for s in data.samples]
    assert guess["what colour is the cube?"] == max(sorted(set(answers)), key=answers.count)
    assert Q.blind_accuracy(data, data)["colour"] == answers.count(guess["what colour is the cube?"]) / 6


def test_blind_baseline_backs_off_to_the_kinds_majority_for_unseen_questions():
    def sample(scene, kind, question, answer):
        return Q.VQASample(scene, kind, question, answer)

    def data(samples):
        n = 1 + max(s.scene for s in samples)
        return Q.VQAData(np.zeros((n, 4, 4, 3), np.uint8), list(range(n)), [[] for _ in range(n)],
                         np.zeros((n, 3)), samples)

    train = data([sample(0, "left_right", "is the red cube left of the plate?", "no"),
                  sample(1, "left_right", "is the blue ball left of the bowl?", "no"),
                  sample(2, "left_right", "is the red ball right of the tray?", "yes")])
    test = data([sample(0, "left_right", "is the green cube left of the plate?", "no"),   # unseen text
                 sample(1, "left_right", "is the red ball right of the tray?", "no")])     # seen: "yes"
    assert Q.kind_majority_answers(train) == {"left_right": "no"}
    assert Q.blind_accuracy(train, test)["left_right"] == 0.0          # unseen counts as wrong
    assert Q.blind_accuracy(train, test, backoff=True)["left_right"] == 0.5
    with pytest.raises(ValueError, match="VQAData"):
        Q.blind_accuracy(train, [])


# ----------------------------------------------------------------------------- model


def test_save_load_round_trip_gives_identical_logits(model, tokenizer, tmp_path):
    data = squares(2)
    pixels = model.preprocess(data.images)
    enc = V.encode_examples(tokenizer, ["what colour is the cube?"] * 2, ["red", "blue"])
    V.save_vlm(model, tokenizer, tmp_path, dtype=torch.float32)
    loaded, tok = V.load_vlm(tmp_path)
    with torch.no_grad():
        a = model(enc["input_ids"], pixels, enc["attention_mask"]).logits
        b = loaded(enc["input_ids"], pixels, enc["attention_mask"]).logits
    assert torch.equal(a, b)
    assert len(tok) == len(tokenizer) and loaded.config.text_config.vocab_size == 1024
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()


def test_labels_are_masked_on_image_and_prompt(model, tokenizer):
    enc = V.encode_examples(tokenizer, ["what colour is the cube?", "how many objects are on the table?"],
                            ["red", "three"])
    prompt_len = len(tokenizer(V.build_prompt("what colour is the cube?"))["input_ids"])
    row = enc["labels"][0]
    assert (row[:prompt_len] == -100).all()
    answer = tokenizer(" red", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert row[prompt_len:prompt_len + len(answer)].tolist() == answer
    assert (row[prompt_len + len(answer):] == -100).all()  # padding
    pixels = model.preprocess(squares(2).images)
    embeds, mask, labels = model.prepare_inputs_embeds(enc["input_ids"], pixels, enc["attention_mask"], enc["labels"])
    n = model.num_patches
    assert embeds.shape[1] == enc["input_ids"].shape[1] + n
    assert (labels[:, : 1 + n] == -100).all() and (mask[:, 1:1 + n] == 1).all()
    assert torch.equal(labels[:, 1 + n:], enc["labels"][:, 1:])
    out = model(enc["input_ids"], pixels, enc["attention_mask"], enc["labels"])
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    manual = torch.nn.functional.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
    assert torch.allclose(out.loss, manual, atol=1e-5)


def test_greedy_decoding_with_cache_equals_without(model, tokenizer):
    torch.manual_seed(1)
    for p in model.language_model.parameters():  # sharper logits than at init: a real test of equality
        p.data.add_(0.05 * torch.randn_like(p))
    pixels = model.preprocess(squares(2).images)
    enc = V.encode_prompts(tokenizer, ["what is it?", "is the red cube left of the plate?"])
    assert enc["attention_mask"][0, 0] == 0 and enc["attention_mask"][1, 0] == 1  # the short one is left-padded
    kw = dict(max_new_tokens=7, stop_at_eos=False)
    cached = model.generate(enc["input_ids"], pixels, enc["attention_mask"], **kw)
    uncached = model.generate(enc["input_ids"], pixels, enc["attention_mask"], use_cache=False, **kw)
    assert cached.shape == (2, 7) and torch.equal(cached, uncached)
    keep = enc["attention_mask"][0].bool()
    alone = model.generate(enc["input_ids"][:1, keep], pixels[:1], **kw)
    assert torch.equal(alone[0], cached[0])  # left padding does not change the answer


def test_a_few_training_steps_reduce_the_loss_reproducibly(tokenizer):
    data = squares(32)
    recipe = tv.VLMRecipe((tv.VLMStage("finetune", steps=40, lr=1e-2),), batch_size=8, seed=0)
    runs = []
    for _ in range(2):
        m = tiny_vlm(tokenizer, seed=0)
        runs.append(tv.train_vlm(m, tokenizer, data, recipe, progress=False).losses())
    assert np.array_equal(runs[0], runs[1])
    assert runs[0][-5:].mean() < 0.4 * runs[0][:5].mean()
    acc = tv.vqa_accuracy(m, tokenizer, data)
    assert set(acc) == {"colour", "all"} and 0 <= acc["all"] <= 1


def test_bad_inputs_raise_clear_errors(model, tokenizer):
    enc = V.encode_prompts(tokenizer, ["what colour is the cube?"])
    ids = enc["input_ids"]
    good = model.preprocess(squares(1).images)
    with pytest.raises(ValueError, match="float32"):
        model(ids, torch.zeros(1, 6, 32, 32))
    with pytest.raises(ValueError, match="float32"):
        model(ids, good.double())
    with pytest.raises(ValueError, match="NaN"):
        model(ids, good * float("nan"))
    with pytest.raises(ValueError, match="uint8"):
        model.preprocess(np.zeros((1, 28, 28, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="token ids"):
        model(ids + 5000, good)
    with pytest.raises(ValueError, match="token ids"):
        model(ids - 10, good)
    with pytest.raises(ValueError, match="non-empty"):
        model(ids[:, :0], good)
    with pytest.raises(ValueError, match="<s>"):
        model(ids[:, 1:], good)
    with pytest.raises(ValueError, match="batch"):
        model(ids, torch.cat([good, good]))
    with pytest.raises(ValueError, match="non-empty question"):
        V.encode_prompts(tokenizer, ["   "])
    with pytest.raises(ValueError, match="answer"):
        V.encode_examples(tokenizer, ["what colour is the cube?"], [""])
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(ids, good, max_new_tokens=0)
    with pytest.raises(ValueError, match="trainable parts"):
        tv.VLMStage("x", steps=1, lr=1e-3, trainable=("eyes",))
