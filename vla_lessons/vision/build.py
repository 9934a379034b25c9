"""Build lesson 04's artifacts: sim images, the pretrained mini SigLIP and DINOv2, a probe table.

Introduced in lesson 04.

``build_vision()`` renders the scenes (seeds 0.. for training, 100000.. for probing), pretrains
both encoders (seed 0, one thread, fp32) and writes the encoders to ``data/models/siglip/`` and
``data/models/dino/`` (``save_pretrained`` folders, each with a ``history.json``; committed, the
lessons load them) and the rendered scenes to ``build/vision/`` (``sim_train.npz``,
``sim_probe.npz``; not committed, re-rendered in about a minute). ``VLA_FULL=1`` trains 1200 steps each (about 25 and 40 minutes
on a busy 2-core machine), the default 300 (a quarter of that, much weaker encoders).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from vla_lessons import env

from .data import load_vision_data, save_vision_data
from .dino_train import pretrain_dino
from .encoders import save_dino, save_siglip
from .siglip_train import pretrain_siglip
from .sim_data import sim_dataset

TRAIN_SCENES, PROBE_SCENES, PROBE_SEED = 2500, 2000, 100_000


def _scenes(path: Path, n: int, seed: int):
    if not path.is_file():
        save_vision_data(sim_dataset(n, seed=seed, image_size=128), path)
    return load_vision_data(path)


#: Where the trained encoders go (committed) and where the rendered scenes go (not committed).
MODELS_DIR = env.DATA_DIR / "models"
SCENES_DIR = env.BUILD_DIR / "vision"


def build_vision(only: list[str] | None = None, out_dir=None, steps: int | None = None,
                 scenes_dir=None) -> list[dict]:
    """Render, pretrain and save (``only``: a subset of ``["siglip", "dino"]``); one summary each.

    Introduced in lesson 04. ``steps`` overrides the fast/full choice of training steps;
    ``out_dir`` (default :data:`MODELS_DIR`) receives ``siglip/`` and ``dino/``, ``scenes_dir``
    (default :data:`SCENES_DIR`) the rendered scenes.
    """
    out = Path(out_dir or MODELS_DIR)
    scenes = Path(scenes_dir or SCENES_DIR)
    out.mkdir(parents=True, exist_ok=True)
    scenes.mkdir(parents=True, exist_ok=True)
    unknown = sorted(set(only or []) - {"siglip", "dino"})
    if unknown:
        raise ValueError(f"unknown vision artifact(s) {unknown}; choose from ['dino', 'siglip']")
    steps = steps or env.pick(fast=300, full=1200)
    train = _scenes(scenes / "sim_train.npz", TRAIN_SCENES, 0)
    _scenes(scenes / "sim_probe.npz", PROBE_SCENES, PROBE_SEED)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared 2-core machine one thread was 2-4x faster than two
    summaries = []
    try:
        for name in ("siglip", "dino"):
            if only and name not in only:
                continue
            start = time.perf_counter()
            if name == "siglip":
                model, tokenizer, history = pretrain_siglip(train.images, train.captions, steps=steps, seed=0)
                save_siglip(model, tokenizer, out / name)
            else:
                model, history = pretrain_dino(train.images, steps=steps, seed=0)
                save_dino(model, out / name)
            seconds = time.perf_counter() - start
            (out / name / "history.json").write_text(json.dumps({"minutes": seconds / 60, "history": history}))
            summaries.append({"name": name, "steps": steps, "seconds": seconds, "path": str(out / name),
                              "loss_first": history["loss"][0], "loss_last": history["loss"][-1]})
    finally:
        torch.set_num_threads(threads)
    return summaries
