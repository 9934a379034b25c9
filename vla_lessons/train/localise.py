"""A localisation objective for the VLA's vision: "where is the red cube?" answered in centimetres.

Introduced in lesson 06 (why the VLA falls short, and what the build does about it).

A VLA has to find the named object before it can move to it. The course's towers, pretrained
on captions and self-distillation, do not say *where* things are (a probe reading their tokens
misses by a median 8 cm; guessing the table's centre misses by 12). This module adds the missing
signal as an auxiliary loss, the way detection or pointing data joins a VLA's co-training mix:

* :func:`render_where` renders scenes of the course simulator and asks for every object and
  receptacle that a phrase names uniquely ("red cube", "bowl"), with its true table-plane position;
* :class:`LocalisationHead` reads the VLA's visual tokens with one query per phrase (a
  cross-attention layer and an MLP) and answers (x, y). It is a training-only head: the VLA
  itself is unchanged, only its towers, projector and patch positions learn to keep positions;
* :func:`localisation_loss` (mean squared error in the head's standardised units) is what
  :func:`~vla_lessons.train.finetune.finetune_vla` adds to the action loss when it is given
  ``where=`` data, and :func:`train_localisation` runs it alone, as a warm-up stage;
* :func:`localisation_error` scores the answers in centimetres.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class WhereData:
    """Rendered scenes and the questions asked of them.

    ``images`` uint8 (S, H, W, 3); ``phrases`` the names asked about; per question (N of them):
    ``scene`` int64 (N,) into ``images``, ``phrase`` int64 (N,) into ``phrases``, ``xy`` float32 (N, 2)
    the true position on the table in metres.
    """

    images: np.ndarray
    phrases: list
    scene: np.ndarray
    phrase: np.ndarray
    xy: np.ndarray

    def __post_init__(self):
        n = len(self.scene)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (S, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if len(self.phrase) != n or self.xy.shape != (n, 2):
            raise ValueError(f"scene, phrase and xy must describe the same {n} questions: "
                             f"got {len(self.phrase)} phrases and xy {self.xy.shape}")
        if n and (self.scene.min() < 0 or self.scene.max() >= len(self.images)
                  or self.phrase.min() < 0 or self.phrase.max() >= len(self.phrases)):
            raise ValueError("scene or phrase index out of range")

    def __len__(self) -> int:
        return len(self.scene)


def object_phrase(thing) -> str:
    """How an instruction names a :class:`~vla_lessons.sim.SceneObject`: ``"red cube"``, or a receptacle's name."""
    return f"{thing.colour} {thing.shape}" if thing.kind == "object" else thing.shape


def render_where(scenes: int, seed: int, *, image_size: int = 96, arm_init_noise: float = 0.15,
                 phrases: list | None = None) -> WhereData:
    """Render ``scenes`` scenes (seeds ``seed``, ``seed + 1``, ...) and ask where each uniquely named thing is.

    Introduced in lesson 06. The families take turns (so the layouts are those of the robot data)
    and the arm starts at a random pose (``arm_init_noise``), so the arm is seen in many places.
    ``phrases``: a fixed list to index into (a held-out set uses the training set's); a phrase
    not in it is skipped. About 4.5 questions per scene; 3,000 scenes take about 100 s.
    """
    from vla_lessons import env as course_env
    from vla_lessons.sim import FAMILIES, SceneConfig, TabletopEnv

    if isinstance(scenes, bool) or not isinstance(scenes, int) or scenes < 1:
        raise ValueError(f"scenes must be a positive int, got {scenes!r}")
    course_env.setup_headless_gl()
    sim = TabletopEnv(SceneConfig(image_size=image_size, arm_init_noise=arm_init_noise))
    images, rows = [], []
    try:
        for i in range(scenes):
            obs, _ = sim.reset(seed=seed + i, options={"task": FAMILIES[i % len(FAMILIES)]})
            images.append(obs["image"])
            things = sim.scene_objects()
            names = [object_phrase(t) for t in things]
            rows += [(i, name, t.position[0], t.position[1]) for t, name in zip(things, names)
                     if names.count(name) == 1]
    finally:
        sim.close()
    if phrases is None:
        phrases = sorted({name for _, name, _, _ in rows})
    index = {name: k for k, name in enumerate(phrases)}
    rows = [r for r in rows if r[1] in index]
    return WhereData(np.stack(images), list(phrases), np.array([r[0] for r in rows], dtype=np.int64),
                     np.array([index[r[1]] for r in rows], dtype=np.int64),
                     np.array([(r[2], r[3]) for r in rows], dtype=np.float32))


class LocalisationHead(torch.nn.Module):
    """Visual tokens (B, P, D) and phrase ids (B,) -> table position (B, 2) in standardised units.

    Introduced in lesson 06. One learned query per phrase attends over the tokens (4 heads); an
    MLP maps the result to (x, y). ``center``/``scale`` (metres) standardise the targets:
    :meth:`to_metres` undoes it.
    """

    def __init__(self, phrases: list, hidden: int, center, scale, heads: int = 4, width: int = 256):
        super().__init__()
        self.phrases = list(phrases)
        self.query = torch.nn.Embedding(len(self.phrases), hidden)
        self.attention = torch.nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.GELU(), torch.nn.Linear(width, 2))
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32).reshape(2))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32).reshape(2))

    @classmethod
    def for_data(cls, model, data: WhereData, **kwargs) -> "LocalisationHead":
        """A head sized for ``model``'s visual tokens, standardising by ``data``'s positions."""
        return cls(data.phrases, model.config.text_config.hidden_size, data.xy.mean(0),
                   data.xy.std(0) + 1e-6, **kwargs)

    def forward(self, tokens: torch.Tensor, phrase_ids: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.query.embedding_dim or phrase_ids.shape != tokens.shape[:1]:
            raise ValueError(f"need tokens (B, P, {self.query.embedding_dim}) and phrase ids (B,), "
                             f"got {tuple(tokens.shape)} and {tuple(phrase_ids.shape)}")
        out, _ = self.attention(self.query(phrase_ids)[:, None], tokens, tokens, need_weights=False)
        return self.mlp(out[:, 0])

    def standardise(self, xy) -> torch.Tensor:
        """Metres (B, 2) -> the head's units."""
        return (torch.as_tensor(xy, dtype=torch.float32) - self.center) / self.scale

    def to_metres(self, out: torch.Tensor) -> torch.Tensor:
        """The head's units (B, 2) -> metres."""
        return out * self.scale + self.center


def _answers(model, head: LocalisationHead, data: WhereData, index: np.ndarray) -> torch.Tensor:
    scenes, inverse = np.unique(data.scene[index], return_inverse=True)
    tokens = model.visual_tokens(model.preprocess(data.images[scenes]))
    return head(tokens[torch.as_tensor(inverse)], torch.as_tensor(data.phrase[index]))


def localisation_loss(model, head: LocalisationHead, data: WhereData, index: np.ndarray) -> torch.Tensor:
    """Mean squared error of the head's answers for the questions at ``index`` (standardised units).

    Introduced in lesson 06. Each scene in the batch goes through the towers once, however many
    questions it carries.
    """
    if head.phrases != data.phrases:
        raise ValueError("the head and the data name different phrases (render held-out data with phrases=head.phrases)")
    return F.mse_loss(_answers(model, head, data, index), head.standardise(data.xy[index]))


@torch.no_grad()
def localisation_error(model, head: LocalisationHead, data: WhereData, batch_size: int = 128) -> dict:
    """How far the answers are from the truth over all of ``data``: ``median_cm``, ``mean_cm``, ``n``.

    Introduced in lesson 06. For scale: answering every question with the mean position misses
    by about 12 cm on the course's scenes.
    """
    was = model.training, head.training
    model.eval(), head.eval()
    try:
        errors = []
        for k in range(0, len(data), batch_size):
            index = np.arange(k, min(k + batch_size, len(data)))
            xy = head.to_metres(_answers(model, head, data, index))
            errors.append((xy - torch.as_tensor(data.xy[index])).norm(dim=1))
    finally:
        model.train(was[0]), head.train(was[1])
    cm = torch.cat(errors).numpy() * 100
    return {"median_cm": float(np.median(cm)), "mean_cm": float(cm.mean()), "n": int(len(cm))}


def vision_parameters(model) -> list:
    """The parameters a localisation loss reaches: the towers, the projector and the patch positions."""
    parts = [model.vision_backbone, model.projector] + ([model.patch_position] if model.patch_position is not None else [])
    return [p for part in parts for p in part.parameters()]


def train_localisation(model, head: LocalisationHead, data: WhereData, *, steps: int, batch_size: int = 32,
                       lr: float = 3e-4, seed: int = 0, heldout: WhereData | None = None, log_every: int = 250,
                       progress: bool = True, threads: int | None = 1) -> list[dict]:
    """Train the head, towers, projector and patch positions on the localisation loss alone.

    Introduced in lesson 06. Returns one dict per ``log_every`` steps (``step``, ``loss``, and
    ``median_cm`` on ``heldout`` when given). Constant learning rate after a 5% warm-up.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(list(head.parameters()) + vision_parameters(model), lr=lr, weight_decay=0.0)
    warm = max(1, steps // 20)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    model.train(), head.train()
    history, window, start = [], [], time.perf_counter()
    try:
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * min(1.0, (step + 1) / warm)
            loss = localisation_loss(model, head, data, rng.integers(0, len(data), batch_size))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 1.0)
            optimizer.step()
            window.append(float(loss.detach()))
            if (step + 1) % log_every == 0 or step == steps - 1:
                row = {"step": step + 1, "loss": float(np.mean(window))}
                window = []
                if heldout is not None:
                    row["median_cm"] = localisation_error(model, head, heldout)["median_cm"]
                history.append(row)
                if progress:
                    where = f"  held-out {row['median_cm']:.1f} cm" if "median_cm" in row else ""
                    print(f"  localise {step + 1}/{steps}  loss {row['loss']:.3f}{where}  "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        torch.set_num_threads(before)
        model.eval(), head.eval()
    return history
