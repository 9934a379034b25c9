"""Grounding: the VLA says *where* the task's object and receptacle are before it acts.

Introduced in lesson 06 (the built VLA's third stage; the README measures what it does).

The privileged ceiling of lesson 06 solves the course's tasks from the robot state, the
instruction's words and four numbers: where the named object stands and where the named
receptacle is. The VLA has the image instead, and a small Llama that did not learn to turn it into
those four numbers on its own from the action loss. So the VLA is asked for them, as an embodied
chain of thought asks a VLA for the objects' boxes before the action (ECoT, Zawalski et al., 2024;
MolmoAct's points play the same part):

* a learned **grounding query** follows the prompt; its last hidden state (the instruction read
  in the image's context) queries the visual tokens through one cross-attention layer, and an
  MLP answers the 4 numbers (:class:`GroundingHead`), normalised to [-1, 1] by the dataset's
  q01/q99 as the actions are;
* a **where token** (a :class:`~vla_lessons.model.vla.ProprioProjector` of the 4 numbers) follows
  the query, and the action queries of OpenVLA-OFT's head follow it: every action reads where;
* training is teacher-forced, as any chain of thought: the where token gets the simulator's truth
  (with noise, so the actions tolerate a grounding that is a little off), and the grounding head is
  trained on the truth in the same forward pass;
* at run time the VLA grounds once, from the episode's first image, and keeps the answer for the
  episode (:meth:`~vla_lessons.model.vla.PrismaticVLA.predict_grounding`; the rollout of
  :mod:`vla_lessons.deploy.evaluate` calls it at reset): the start positions are what it was taught.

The truth is read from the simulator at reset (:func:`task_grounding`); only the first
:data:`GROUND_STEPS` steps of an episode, before the arm has touched anything, teach the head.
"""

from __future__ import annotations

import numpy as np
import torch

#: Numbers a grounding holds: the task object's (x, y) and the task receptacle's (x, y) on the
#: table, in metres; the receptacle's are (0, 0) when the task has none (pick, push).
GROUNDING_DIM = 4
#: An episode's first steps, whose images still show the objects where they started: the steps
#: the grounding head is trained on.
GROUND_STEPS = 3


def task_grounding(sim) -> np.ndarray:
    """The truth a grounding answers, read from a reset simulator: float32 (GROUNDING_DIM,).

    Introduced in lesson 06. ``sim`` is a :class:`~vla_lessons.sim.TabletopEnv` after ``reset``.
    """
    if getattr(sim, "task", None) is None:
        raise ValueError("task_grounding needs a reset TabletopEnv (call sim.reset(seed=...) first)")
    things = sim.scene_objects()
    target = next((o for o in things if o.kind == "object" and o.is_target), None)
    if target is None:
        raise ValueError("the scene has no task object (no object with is_target)")
    receptacle = next((o.position[:2] for o in things if o.kind == "receptacle" and o.is_target), np.zeros(2))
    return np.concatenate([target.position[:2], receptacle]).astype(np.float32)


def episode_grounding(root) -> np.ndarray:
    """:func:`task_grounding` at the start of every episode of the dataset at ``root``: float32 (E, 4).

    Introduced in lesson 06. Row ``e`` belongs to ``ActionFrames.episodes == e``.
    """
    return at_episode_starts(root, task_grounding)


def at_episode_starts(root, read) -> np.ndarray:
    """``read(sim)`` at the start of every episode of the dataset at ``root``, stacked: (E, ...).

    Introduced in lesson 06. Each episode is re-created from its recorded seed and family
    (``meta/episodes.jsonl``) in a simulator that renders nothing.
    """
    from vla_lessons import env
    from vla_lessons.data.reader import load_meta
    from vla_lessons.sim import TabletopEnv

    env.setup_headless_gl()
    sim = TabletopEnv(render_images=False)
    try:
        rows = []
        for ep in load_meta(root).episodes:
            sim.reset(seed=int(ep["seed"]), options={"task": ep["family"]})
            rows.append(read(sim))
    finally:
        sim.close()
    return np.stack(rows)


class GroundingHead(torch.nn.Module):
    """(query hidden state (B, D), visual tokens (B, N, D)) -> grounding (B, dim), normalised units.

    Introduced in lesson 06. The query's hidden state (LayerNorm) attends over the visual tokens
    (one multi-head cross-attention layer); an MLP reads the result next to the query itself.
    The output is unbounded; the VLA clips it to [-1, 1] before it un-normalises.
    """

    def __init__(self, hidden: int, dim: int = GROUNDING_DIM, heads: int = 4, width: int = 256):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)
        self.attention = torch.nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(2 * hidden, width), torch.nn.GELU(),
                                       torch.nn.Linear(width, dim))

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        if query.ndim != 2 or tokens.ndim != 3 or tokens.shape[0] != query.shape[0] \
                or tokens.shape[-1] != query.shape[-1]:
            raise ValueError(f"need query (B, D) and tokens (B, N, D), got {tuple(query.shape)} and {tuple(tokens.shape)}")
        q = self.norm(query)
        read, _ = self.attention(q[:, None], tokens, tokens, need_weights=False)
        return self.mlp(torch.cat([read[:, 0], q], dim=-1))
