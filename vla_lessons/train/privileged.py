"""The privileged ceiling: a small policy handed the simulator's ground truth instead of the image.

Introduced in lesson 06 (why the VLA falls short of the expert).

A VLA must *see* where the named object is and then *act* on it. To tell the two apart, this
module trains a policy that skips the seeing: its input is the robot state plus
:func:`privileged_features` -- the task's object's position and yaw and the target receptacle's
position, read from the simulator at the start of the episode, and the family, shape and push
direction as one-hot vectors. ("Learning by cheating", Chen et al. 2019, calls such a policy a
privileged agent.) It is a plain MLP trained on the same recorded expert steps as the VLA, with
one of two output heads:

* ``"regression"`` -- 7 continuous values, trained on actions scaled to [-1, 1] by the q01/q99
  statistics with the mean squared error or, as OpenVLA-OFT's continuous head, the L1 loss;
* ``"bins"`` -- 7 x 256 logits, the OpenVLA action tokenizer's bins, trained with cross-entropy
  and decoded by argmax. ``label_sigma > 0`` spreads each target over its neighbouring bins
  (:func:`~vla_lessons.train.finetune.gaussian_bin_targets`, the VLA's ``FinetuneConfig.label_sigma``).

With ``chunk_size = K > 1`` either head predicts the next K actions at once and the rollout
executes them before it asks again (action chunking, the VLA's ``config.chunk_size``).

The closed-loop success of each head is what a VLA with perfect perception could reach on this
data; :func:`build_privileged` writes it to ``data/results/privileged.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vla_lessons import env
from vla_lessons.actions.bins import QuantileNormalizer, UniformBinTokenizer

HEADS = ("regression", "bins")
DIRECTIONS = ("left", "right", "forward", "backward")
#: Length of :func:`privileged_features`: object xy (2), receptacle xy (2), sin/cos of 4 x yaw (2),
#: family (3), shape (3) and push direction (4) one-hots.
N_FEATURES = 16
RESULTS_PATH = env.DATA_DIR / "results" / "privileged.json"
#: The chunk size of :func:`build_privileged`'s chunked rows (the course VLA's, when it predicts chunks).
CHUNK = 4


def privileged_features(sim) -> np.ndarray:
    """What the policy is handed instead of the image, float32 (N_FEATURES,), read from ``sim`` now.

    Introduced in lesson 06. ``sim`` is a reset :class:`~vla_lessons.sim.TabletopEnv`. The
    receptacle's xy is 0 when the task has none (pick, push); the direction one-hot is 0 unless
    the task is a push. A cube's yaw enters as sin/cos of 4 x yaw (a quarter turn looks the same).
    """
    from vla_lessons.model.grounding import task_grounding
    from vla_lessons.sim import FAMILIES
    from vla_lessons.sim.config import SHAPES
    from vla_lessons.sim.expert import _yaw_of

    task = getattr(sim, "task", None)
    if task is None:
        raise ValueError("privileged_features needs a reset TabletopEnv (call sim.reset(seed=...) first)")
    where = task_grounding(sim)  # the task object's and receptacle's xy
    target = next(o for o in sim.scene_objects() if o.kind == "object" and o.is_target)
    yaw = 4.0 * _yaw_of(target.quaternion)
    direction = getattr(task, "direction", None)
    return np.concatenate([
        where, [math.sin(yaw), math.cos(yaw)],
        np.eye(len(FAMILIES))[FAMILIES.index(task.family)],
        np.eye(len(SHAPES))[SHAPES.index(target.shape)],
        np.eye(len(DIRECTIONS))[DIRECTIONS.index(direction)] if direction in DIRECTIONS else np.zeros(len(DIRECTIONS)),
    ]).astype(np.float32)


def episode_features(root) -> np.ndarray:
    """:func:`privileged_features` at the start of every episode of the dataset at ``root``: (E, N_FEATURES).

    Introduced in lesson 06. Each episode is re-created from its recorded seed and family
    (``meta/episodes.jsonl``), so row ``e`` belongs to ``ActionFrames.episodes == e``.
    """
    from vla_lessons.model.grounding import at_episode_starts

    return at_episode_starts(root, privileged_features)


class PrivilegedPolicy(torch.nn.Module):
    """An MLP: (robot state (8,), privileged features (N_FEATURES,)) -> action (7,).

    Introduced in lesson 06. ``head`` is one of :data:`HEADS`; ``stats`` holds the q01/q99 of the
    inputs and the actions (``{"x_low", "x_high", "y_low", "y_high"}``), which scale them to [-1, 1].
    ``chunk_size``: actions predicted at once (K). :meth:`act_chunk` maps raw inputs to raw
    actions (B, K, 7), :meth:`act` to the first of them; :func:`privileged_policy` wraps it for the rollout.
    """

    def __init__(self, stats: dict, head: str = "regression", hidden: int = 256, n_bins: int = 256,
                 chunk_size: int = 1):
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self.head, self.n_bins, self.chunk_size = head, int(n_bins), chunk_size
        self.stats = {k: np.asarray(stats[k], dtype=np.float64) for k in ("x_low", "x_high", "y_low", "y_high")}
        n_in, n_out = len(self.stats["x_low"]), len(self.stats["y_low"])
        # lesson 02's normalisation (every dimension, the gripper too) and, for "bins", its uniform bins
        self.x_norm = QuantileNormalizer(self.stats["x_low"], self.stats["x_high"], np.ones(n_in, bool))
        self.y_norm = QuantileNormalizer(self.stats["y_low"], self.stats["y_high"], np.ones(n_out, bool))
        self.bins = UniformBinTokenizer(self.n_bins)
        self.action_dim = n_out
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_in, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
            torch.nn.Linear(hidden, chunk_size * n_out * (self.n_bins if head == "bins" else 1)))

    def inputs(self, states, privileged) -> torch.Tensor:
        """Raw states (B, 8) and features (B, N_FEATURES) -> the scaled input (B, 8 + N_FEATURES)."""
        states, privileged = np.asarray(states, np.float64), np.asarray(privileged, np.float64)
        n_in = len(self.stats["x_low"])
        if states.ndim != 2 or privileged.ndim != 2 or len(states) != len(privileged) \
                or states.shape[1] + privileged.shape[1] != n_in:
            raise ValueError(f"need states (B, P) and privileged features (B, F) with P + F = {n_in}, "
                             f"got {states.shape} and {privileged.shape}")
        x = np.concatenate([states, privileged], axis=1)
        if not np.isfinite(x).all():
            raise ValueError("states or privileged features contain NaN or inf")
        return torch.as_tensor(self.x_norm.normalize(x), dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled inputs (B, n_in) -> (B, K, 7) scaled actions, or (B, K, 7, n_bins) logits for ``"bins"``."""
        out = self.net(x).view(len(x), self.chunk_size, self.action_dim, -1)
        return out if self.head == "bins" else out[..., 0]

    def targets(self, actions) -> torch.Tensor:
        """Raw actions (B, K, 7) -> scaled actions (B, K, 7), or bin indices long (B, K, 7) for ``"bins"``."""
        y = self.y_norm.normalize(np.asarray(actions, np.float64))
        if self.head == "bins":
            return torch.as_tensor(self.bins.encode(y), dtype=torch.long)
        return torch.as_tensor(y, dtype=torch.float32)

    def act(self, states, privileged) -> np.ndarray:
        """Raw states (B, 8) and features (B, N_FEATURES) -> raw actions float64 (B, 7): the chunk's first."""
        return self.act_chunk(states, privileged)[:, 0]

    @torch.no_grad()
    def act_chunk(self, states, privileged) -> np.ndarray:
        """Raw states (B, 8) and features (B, N_FEATURES) -> raw actions float64 (B, K, 7), gripper 0 or 1."""
        was_training = self.training
        self.eval()
        try:
            out = self(self.inputs(states, privileged))
        finally:
            self.train(was_training)
        if self.head == "bins":
            scaled = self.bins.decode(out.argmax(-1).numpy())
        else:  # the regression is unbounded: keep it in the [-1, 1] the statistics scale to
            scaled = np.clip(out.numpy().astype(np.float64), -1.0, 1.0)
        actions = self.y_norm.unnormalize(scaled)
        actions[..., -1] = (actions[..., -1] > 0.5).astype(np.float64)  # the gripper is open (1) or closed (0)
        return actions


def privileged_policy(model: PrivilegedPolicy):
    """``policy(images, instructions, states, *, privileged) -> actions (B, 7)`` for the closed-loop rollout.

    Introduced in lesson 06. The images and instructions are ignored; ``needs_state`` and
    ``needs_privileged`` make :func:`~vla_lessons.deploy.evaluate.rollout_batch` pass the robot
    state and :func:`privileged_features` (read once, right after each episode's reset).
    """
    if not isinstance(model, PrivilegedPolicy):
        raise ValueError(f"need a PrivilegedPolicy (see train_privileged), got {type(model).__name__}")

    def policy(images, instructions, states=None, *, privileged=None):
        if states is None or privileged is None:
            raise ValueError("the privileged policy needs the robot states and the privileged features")
        return model.act_chunk(states, privileged) if model.chunk_size > 1 else model.act(states, privileged)

    policy.chunk_size = model.chunk_size
    policy.needs_state = True
    policy.needs_privileged = True
    return policy


@dataclass(frozen=True)
class PrivilegedConfig:
    """Training settings of :func:`train_privileged` (``label_sigma`` in bins, ``"bins"`` head only).

    ``loss``: ``"mse"`` or ``"l1"`` (OpenVLA-OFT's), for the ``"regression"`` head; ``chunk_size``:
    actions predicted at once.
    """

    head: str = "regression"
    steps: int = 6000
    batch_size: int = 256
    lr: float = 1e-3
    label_sigma: float = 0.0
    seed: int = 0
    loss: str = "mse"
    chunk_size: int = 1

    def __post_init__(self):
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        if self.steps < 1 or self.batch_size < 1 or not self.lr > 0 or self.label_sigma < 0:
            raise ValueError("need steps >= 1, batch_size >= 1, lr > 0 and label_sigma >= 0")
        if self.label_sigma > 0 and self.head != "bins":
            raise ValueError("label_sigma spreads targets over bins: it needs head='bins'")
        if self.loss not in ("mse", "l1") or (self.loss == "l1" and self.head != "regression"):
            raise ValueError(f"loss must be 'mse' or 'l1' ('l1' with head='regression'), got {self.loss!r}")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or self.chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}")


def train_privileged(frames, features: np.ndarray, config: PrivilegedConfig = PrivilegedConfig(),
                     threads: int | None = 1) -> tuple[PrivilegedPolicy, list[dict]]:
    """Fit a :class:`PrivilegedPolicy` to ``frames`` (:class:`ActionFrames` with states); returns it and its loss curve.

    Introduced in lesson 06. ``features`` (E, N_FEATURES) is :func:`episode_features` of the
    frames' dataset (row ``e`` for the steps with ``frames.episodes == e``).
    """
    from vla_lessons.train.finetune import chunk_indices, gaussian_bin_targets

    features = np.asarray(features, dtype=np.float32)
    if frames.states is None:
        raise ValueError("the frames have no robot states (load them with load_action_frames)")
    if features.ndim != 2 or len(features) <= int(frames.episodes.max()):
        raise ValueError(f"features must be (E, F) with a row for each of the frames' {int(frames.episodes.max()) + 1} "
                         f"episodes, got shape {features.shape}")
    x = np.concatenate([frames.states, features[frames.episodes]], axis=1).astype(np.float64)
    stats = {"x_low": np.quantile(x, 0.01, axis=0), "x_high": np.quantile(x, 0.99, axis=0),
             "y_low": np.quantile(frames.actions, 0.01, axis=0), "y_high": np.quantile(frames.actions, 0.99, axis=0)}
    torch.manual_seed(config.seed)
    policy = PrivilegedPolicy(stats, config.head, chunk_size=config.chunk_size)
    inputs = policy.inputs(frames.states, features[frames.episodes])
    chunks = frames.actions[chunk_indices(frames.episodes, np.arange(len(frames)), config.chunk_size)]
    targets = policy.targets(chunks)  # (N, K, 7): each step's action and the next K - 1 of its episode
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr)
    rng = np.random.default_rng(config.seed)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    history = []
    try:
        policy.train()
        for step in range(config.steps):
            index = torch.as_tensor(rng.integers(0, len(inputs), config.batch_size))
            out = policy(inputs[index])
            if config.head == "regression":
                loss = (F.l1_loss if config.loss == "l1" else F.mse_loss)(out, targets[index])
            elif config.label_sigma > 0:
                soft = gaussian_bin_targets(targets[index], policy.n_bins, policy.n_bins, config.label_sigma)
                loss = -(soft * F.log_softmax(out, dim=-1)).sum(-1).mean()
            else:
                loss = F.cross_entropy(out.reshape(-1, policy.n_bins), targets[index].reshape(-1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if (step + 1) % max(1, config.steps // 20) == 0 or step == config.steps - 1:
                history.append({"step": step + 1, "loss": float(loss.detach())})
    finally:
        torch.set_num_threads(before)
        policy.eval()
    return policy, history


def build_privileged(full: bool | None = None, out_path=None, *, episodes: int | None = None,
                     progress: bool = True) -> dict:
    """Train privileged policies -- regression (MSE, L1) and bins (one-hot, soft), one action or a chunk -- and roll each out.

    Introduced in lesson 06. Full mode: the VLA's training data (``tabletop_train``, the same
    held-out episodes left out) and 50 closed-loop episodes per family; fast mode: the
    committed ``tabletop_lessons`` and 4 episodes per family. Writes ``data/results/privileged.json``.
    """
    from vla_lessons.data.recipes import course_recipes
    from vla_lessons.deploy.evaluate import evaluate_policy, success_table
    from vla_lessons.train.build_vla import split_episodes
    from vla_lessons.train.finetune import load_action_frames

    full = env.full_mode() if full is None else full
    recipe = course_recipes(full)["tabletop_train" if full else "tabletop_lessons"]
    episodes = episodes or (50 if full else 4)
    start = time.perf_counter()
    frames, _ = split_episodes(load_action_frames(recipe.root, wrist=False))
    features = episode_features(recipe.root)
    configs = [PrivilegedConfig("regression"), PrivilegedConfig("bins"), PrivilegedConfig("bins", label_sigma=3.0),
               PrivilegedConfig("regression", loss="l1"), PrivilegedConfig("regression", loss="l1", chunk_size=CHUNK),
               PrivilegedConfig("bins", chunk_size=CHUNK)]
    if not full:
        configs = [replace(c, steps=300) for c in configs]
    rows = []
    for config in configs:
        t0 = time.perf_counter()
        policy, history = train_privileged(frames, features, config)
        results = evaluate_policy(privileged_policy(policy), episodes=episodes)
        table = success_table(results)
        rows.append({"config": asdict(config), "final_loss": history[-1]["loss"], "closed_loop": table,
                     "seconds": time.perf_counter() - t0})
        if progress:
            print(f"  {config.head} ({config.loss if config.head == 'regression' else f'label_sigma {config.label_sigma}'}, "
                  f"chunk {config.chunk_size}): "
                  + ", ".join(f"{f} {v['success']}/{v['episodes']}" for f, v in table.items()), flush=True)
    summary = {"dataset": recipe.name, "train_frames": len(frames), "episodes_per_family": episodes,
               "rows": rows, "seconds": time.perf_counter() - start}
    out_path = Path(out_path) if out_path is not None else RESULTS_PATH
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def load_privileged(path=None) -> dict:
    """The results :func:`build_privileged` wrote (default ``data/results/privileged.json``).

    Introduced in lesson 06.
    """
    return env.read_results(path if path is not None else RESULTS_PATH, "privileged-policy results", "privileged")


if __name__ == "__main__":
    summary = build_privileged()
    print(f"wrote {RESULTS_PATH} in {summary['seconds']:.0f} s")
