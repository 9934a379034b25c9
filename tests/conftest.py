"""Shared test fixtures: one torch thread, and a toy-sized VLA with the mini VLA's module names."""

import pytest
import torch

#: Text for the toy tokenizer, and action statistics for the toy VLA.
TOY_CORPUS = ["pick up the red cube", "put the blue ball in the bowl", "push the green cylinder left",
              "what action should the robot take to", "red", "blue"] * 5
TOY_STATS = {"action": {"q01": [-0.02, -0.02, -0.02, -0.1, -0.1, 0.0, 0.0],
                        "q99": [0.02, 0.02, 0.02, 0.1, 0.1, 0.0, 1.0]}}
#: Robot-state statistics (8 numbers, the last constant) for a toy VLA that reads the state.
STATE_STATS = {"q01": [0.1, -0.2, 0.0, -1.0, 1.0, -1.0, 0.0, 0.0],
               "q99": [0.3, 0.2, 0.1, 1.0, 1.4, 1.0, 1.0, 0.0]}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Toy-sized ops run faster on one thread, above all on a busy shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy_vlm(llama_layers: int = 1):
    """``(tokenizer, vlm)``: a VLM with 28 px towers and a ``llama_layers``-layer Llama, seeded."""
    from vla_lessons.model.text_tokenizer import train_text_tokenizer
    from vla_lessons.model.vlm import build_vlm

    torch.manual_seed(0)
    tok = train_text_tokenizer(TOY_CORPUS, vocab_size=700)
    return tok, build_vlm(tok, seed=0, siglip_config=dict(image_size=28), dino_config=dict(image_size=28),
                          num_hidden_layers=llama_layers)


def _toy_vla(llama_layers: int = 1):
    """A VLA made from :func:`toy_vlm` with :data:`TOY_STATS`, in eval mode."""
    from vla_lessons.model.vla import vla_from_vlm

    tok, vlm = toy_vlm(llama_layers)
    return vla_from_vlm(vlm, tok, {"tabletop": TOY_STATS}).eval()


@pytest.fixture(scope="session")
def make_toy_vla():
    """``make_toy_vla(llama_layers)`` -> a toy VLA (see :func:`_toy_vla`)."""
    return _toy_vla
