"""Smoke tests of the mini Prismatic VLM (work in progress: the full tests come with lesson 05)."""

import numpy as np
import pytest
import torch

from vla_lessons.model.text_tokenizer import N_RESERVED, reserved_ids, train_text_tokenizer
from vla_lessons.model.vlm import build_vlm, encode_examples, encode_prompts, load_vlm, save_vlm

CORPUS = ["pick up the red cube", "put the blue ball in the bowl", "push the green cylinder left",
          "what colour is the cube?", "red", "blue", "how many objects are on the table?", "three"] * 5


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    tok = train_text_tokenizer(CORPUS, vocab_size=700)
    return tok, build_vlm(tok, seed=0)


def test_reserved_block_is_the_last_256_ids_and_never_emitted_by_text(tiny):
    tok, _ = tiny
    block = reserved_ids(tok)
    assert len(block) == N_RESERVED and block[-1] == len(tok) - 1
    ids = tok("pick up the purple zebra, please!")["input_ids"]
    assert ids and not set(ids) & set(block), "text must never produce reserved (action) ids"


def test_forward_masks_labels_and_save_load_keeps_logits(tiny, tmp_path):
    tok, model = tiny
    model.eval()
    size = model.config.image_size
    images = np.random.default_rng(0).integers(0, 255, (2, size, size, 3), dtype=np.uint8)
    batch = encode_examples(tok, ["what colour is the cube?"] * 2, ["red", "blue"])
    pixels = model.preprocess(images)
    with torch.no_grad():
        out = model(pixel_values=pixels, **batch)
    assert torch.isfinite(out.loss)
    save_vlm(model, tok, tmp_path / "vlm", dtype=torch.float32)
    again, _ = load_vlm(tmp_path / "vlm")
    again.eval()
    with torch.no_grad():
        assert torch.allclose(again(pixel_values=pixels, **batch).logits, out.logits, atol=1e-5)
        prompts = encode_prompts(tok, ["what colour is the cube?"])
        new = model.generate(pixel_values=pixels[:1], max_new_tokens=4, **prompts)
    assert new.shape[0] == 1 and new.shape[1] <= 4
