"""Build the course's VLA: fine-tune the lesson-05 VLM on the robot data, roll it out, save it.

Introduced in lesson 06 (``python -m vla_lessons.build vla``).

Steps, every one seeded:

1. read ``tabletop_train`` (lesson 01's ``data`` target records it when missing) and hold out
   the last 5% of its episodes for teacher-forced metrics;
2. turn ``data/models/vlm`` into a :class:`~vla_lessons.model.vla.PrismaticVLA` carrying the
   dataset's statistics under the name ``"tabletop"``;
3. fine-tune every parameter (OpenVLA's recipe) with :func:`~vla_lessons.train.finetune.finetune_vla`,
   in the stages of :data:`COURSE_FINETUNE`; from stage :data:`PROPRIO_FROM_STAGE` on, the VLA
   also reads the robot state (one proprioception token, as OpenVLA-OFT), and from stage
   :data:`WRIST_FROM_STAGE` on the wrist camera (OpenVLA-OFT's second image); from stage
   :data:`ACTION_CHUNK` on it answers chunks of actions with OpenVLA-OFT's continuous head
   (:data:`ACTION_HEAD`), and from stage :data:`GROUND_FROM` on it says where the task's object and
   receptacle are before it acts (:mod:`~vla_lessons.model.grounding`);
4. roll it out in closed loop, ``eval_episodes`` seeded episodes per task family, next to the
   scripted expert on the same seeds (a grounding VLA twice: on its own grounding, and handed the
   simulator's, :func:`~vla_lessons.train.finetune.true_grounding_policy`);
5. save the VLA (float16 weights, statistics, tokenizer) and ``metrics.json`` to ``data/models/vla``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from vla_lessons import env

from .finetune import (FinetuneConfig, evaluate_actions, finetune_vla, load_action_frames, true_grounding_policy,
                       vla_policy)

#: Where the built VLA goes (committed).
VLA_DIR = env.DATA_DIR / "models" / "vla"
#: The name the course's robot statistics go by (``predict_action(..., unnorm_key="tabletop")``).
UNNORM_KEY = "tabletop"
#: Fine-tuning of the course's VLA, fast (a smoke run) and full (the committed model): one or
#: more stages run one after the other, each with its own warmup and cosine decay (a "warm
#: restart"). The full recipe's second stage exists because the VLA only starts to *use the
#: image* after about 1,500 steps (before that, its loss is the same with shuffled images: it
#: predicts from the instruction alone), so the first cosine decays just as it gets going.
COURSE_FINETUNE = {
    "fast": (FinetuneConfig(steps=300, batch_size=32, lr=3e-4, shift=4, log_every=10, ground_batch=8),),
    "full": (FinetuneConfig(steps=3000, batch_size=32, lr=3e-4, shift=4, log_every=25, seed=0),
             FinetuneConfig(steps=3000, batch_size=32, lr=3e-4, shift=4, log_every=25, seed=1),
             FinetuneConfig(steps=3000, batch_size=32, lr=3e-4, shift=4, log_every=25, seed=2, ground_batch=8)),
}
#: The stage from which the VLA also reads the robot state (OpenVLA-OFT's proprioception token,
#: :func:`~vla_lessons.model.vla.add_proprio`). In the full recipe it joins at the third stage, on
#: top of the two image-and-instruction stages (the VLA uses the image by then). Given the state
#: from step 0 the loss falls much faster (1.57 against 1.92 at step 500), but the VLA still
#: ignored the image at step 1,500, as it does without the state.
PROPRIO_FROM_STAGE = {"fast": 0, "full": 2}
#: The stage from which the VLA also reads the wrist camera (OpenVLA-OFT's second image,
#: :func:`~vla_lessons.model.vla.add_wrist_camera`); None: never. The course's recipe does not use
#: it yet: added to the committed VLA for 1,500 more steps it was ignored (the held-out loss with
#: the wrist images shuffled between steps was the same, 1.489 against 1.496).
WRIST_FROM_STAGE = {"fast": None, "full": None}
#: ``(stage, K)``: from that stage on the VLA answers with the next K actions (action chunking: 7 K
#: tokens, :func:`~vla_lessons.model.vla.set_action_chunk`, or K queries of the continuous head), and
#: the rollout executes each chunk before it asks again; None: one action per answer, as OpenVLA.
#: The course's VLA answers chunks of 4 with the continuous head from its third stage: as 28 tokens
#: chunks did not help it (15/150 against 23/150), with the continuous head they did (30/150).
ACTION_CHUNK = {"fast": (0, 4), "full": (2, 4)}
#: How the VLA answers from the chunk stage on: ``"tokens"`` (OpenVLA's action ids, 7 K of them)
#: or ``"l1"`` (OpenVLA-OFT's continuous head, :func:`~vla_lessons.model.vla.add_l1_head`).
ACTION_HEAD = {"fast": "l1", "full": "l1"}
#: The stage from which the VLA says where the task's object and receptacle are before it acts
#: (:mod:`~vla_lessons.model.grounding`; needs the ``"l1"`` head from that stage on); None: never.
#: With it the course's VLA went from 30/150 to 56/150, and to 144/150 handed the true grounding.
GROUND_FROM = {"fast": 0, "full": 2}
HELDOUT_FRACTION = 0.05


@dataclass(frozen=True)
class LocaliseConfig:
    """The localisation objective of the build (:mod:`~vla_lessons.train.localise`).

    From stage ``from_stage`` on, the VLA gets learned 2-D patch positions; before that stage's
    action steps, its towers, projector and positions are trained for ``warmup_steps`` on "where
    is the X?" alone (``batch_size`` questions a step), and every stage from then on keeps the
    objective up through its ``FinetuneConfig.loc_batch``. ``scenes``/``heldout_scenes``: the
    rendered scenes to train on and to score on (seeds ``seed``...).
    """

    from_stage: int = 2
    warmup_steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-4
    scenes: int = 3000
    heldout_scenes: int = 200
    seed: int = 3_000_000

    def __post_init__(self):
        for name in ("from_stage", "warmup_steps", "batch_size", "scenes", "heldout_scenes", "seed"):
            value = getattr(self, name)
            least = 1 if name in ("batch_size", "scenes", "heldout_scenes") else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")


#: The localisation objective of each mode (None: none).
LOCALISE = {"fast": None, "full": None}


def split_episodes(frames, fraction: float = HELDOUT_FRACTION):
    """``(train, heldout)`` :class:`ActionFrames`: the last ``fraction`` of the episodes held out."""
    n_eps = int(frames.episodes.max()) + 1
    cut = n_eps - max(1, int(round(fraction * n_eps)))
    return frames.subset(frames.episodes < cut), frames.subset(frames.episodes >= cut)


def course_vla_from_vlm(stats: dict, vlm_dir=None, visual_position: str | None = None, proprio: bool = False):
    """The lesson-05 VLM turned into a VLA with the robot statistics ``stats`` as ``"tabletop"``.

    ``stats`` is the dataset's ``stats.json`` (``"action"``, ``"observation.state"``, ...);
    ``proprio=True`` gives the VLA the robot state as one more input token (OpenVLA-OFT's).
    """
    from vla_lessons.model.train_vlm import VLM_DIR
    from vla_lessons.model.vla import vla_from_vlm
    from vla_lessons.model.vlm import load_vlm

    vlm, tokenizer = load_vlm(vlm_dir or VLM_DIR)
    keep = {"action": stats["action"]}
    if proprio:
        keep["proprio"] = stats["observation.state"]
    return vla_from_vlm(vlm, tokenizer, {UNNORM_KEY: keep}, visual_position=visual_position,
                        proprio_dim=len(keep["proprio"]["q01"]) if proprio else 0)


def build_course_vla(out_dir=None, *, full: bool | None = None, stages=None,
                     eval_episodes: int | None = None, checkpoint_dir=None, checkpoint_every: int = 0,
                     progress: bool = True, start_from=None, vlm_dir=None,
                     visual_position: str | None = None, proprio_from: int | str | None = "course",
                     wrist_from: int | str | None = "course", localise: LocaliseConfig | None | str = "course",
                     chunk: tuple[int, int] | None | str = "course", action_head: str = "course",
                     ground_from: int | None | str = "course") -> dict:
    """Fine-tune, evaluate and save the course's VLA; returns the summary written to ``metrics.json``.

    Introduced in lesson 06. ``stages`` (FinetuneConfigs) overrides :data:`COURSE_FINETUNE`;
    ``eval_episodes`` (default 50 in full mode, 10 in fast) sets the closed-loop episodes per
    family; ``checkpoint_dir`` + ``checkpoint_every`` save intermediate VLAs (one folder per
    stage). ``start_from=(k, path)`` resumes after stage ``k`` from a VLA saved at its end
    (the build never needs it; it saves recomputing finished stages). ``proprio_from``: the stage
    from which the VLA reads the robot state (``"course"``: :data:`PROPRIO_FROM_STAGE`; None: never);
    ``wrist_from``, the same for the wrist camera (:data:`WRIST_FROM_STAGE`); ``localise``, the
    localisation objective (``"course"``: :data:`LOCALISE`; None: none); ``chunk``, ``(stage, K)``
    for action chunks of K actions from that stage on (``"course"``: :data:`ACTION_CHUNK`; None: none),
    answered as ``action_head`` says (``"course"``: :data:`ACTION_HEAD`; ``"tokens"`` or ``"l1"``);
    ``ground_from``, the stage from which the VLA grounds (``"course"``: :data:`GROUND_FROM`; None: never).
    """
    from vla_lessons.data.recipes import build_dataset, course_recipes
    from vla_lessons.data.layout import DatasetNotFoundError
    from vla_lessons.data.reader import load_meta
    from vla_lessons.deploy.evaluate import evaluate_expert, evaluate_policy, success_table
    from vla_lessons.model.vla import save_vla

    full = env.full_mode() if full is None else full
    stages = tuple(stages or COURSE_FINETUNE["full" if full else "fast"])
    eval_episodes = eval_episodes or (50 if full else 10)
    out_dir = Path(out_dir) if out_dir is not None else VLA_DIR
    if localise == "course":
        localise = LOCALISE["full" if full else "fast"]
    if localise is not None and not 0 <= localise.from_stage < len(stages):
        raise ValueError(f"localise.from_stage must be a stage index in [0, {len(stages) - 1}], got {localise.from_stage}")
    first = localise.from_stage if localise is not None else len(stages)
    if any(c.loc_batch for c in stages[:first]):
        raise ValueError("a stage has loc_batch > 0 but the localisation objective starts later or never "
                         "(pass localise=LocaliseConfig(from_stage=...))")
    if chunk == "course":
        chunk = ACTION_CHUNK["full" if full else "fast"]
    if chunk is not None and (not isinstance(chunk, tuple) or len(chunk) != 2
                              or any(isinstance(v, bool) or not isinstance(v, int) for v in chunk)
                              or not 0 <= chunk[0] < len(stages) or chunk[1] < 1):
        raise ValueError(f"chunk must be None or (stage, K) with K >= 1 and a stage index in [0, {len(stages) - 1}], got {chunk!r}")
    if action_head == "course":
        action_head = ACTION_HEAD["full" if full else "fast"]
    if action_head not in ("tokens", "l1"):
        raise ValueError(f"action_head must be 'tokens' or 'l1', got {action_head!r}")
    if action_head == "l1" and chunk is None:
        raise ValueError("action_head='l1' joins at the chunk stage: pass chunk=(stage, K) too (K may be 1)")
    if action_head == "l1" and any(c.label_sigma > 0 for c in stages[chunk[0]:]):
        raise ValueError("label_sigma spreads targets over bins: the stages with the L1 head must have label_sigma=0")
    if ground_from == "course":
        ground_from = GROUND_FROM["full" if full else "fast"]
    if ground_from is not None and (isinstance(ground_from, bool) or not isinstance(ground_from, int)
                                    or not 0 <= ground_from < len(stages)):
        raise ValueError(f"ground_from must be None or a stage index in [0, {len(stages) - 1}], got {ground_from!r}")
    if ground_from is not None and (action_head != "l1" or chunk is None or ground_from < chunk[0]):
        raise ValueError("grounding feeds the continuous head: it needs action_head='l1' and a chunk stage "
                         "at or before ground_from")
    if any(c.ground_batch for c in stages[:len(stages) if ground_from is None else ground_from]):
        raise ValueError("a stage has ground_batch > 0 but grounding starts later or never (pass ground_from=...)")
    t0 = time.perf_counter()
    recipe = course_recipes(full)["tabletop_train"]
    try:
        meta = load_meta(recipe.root)
        if meta.total_episodes != recipe.episodes_per_family * len(recipe.families):
            raise DatasetNotFoundError(recipe.root, "tabletop_train of this mode's size")
    except (DatasetNotFoundError, FileNotFoundError, ValueError):
        if progress:
            print(f"[vla] recording {recipe.name} first", flush=True)
        build_dataset(recipe)
        meta = load_meta(recipe.root)
    if proprio_from == "course":
        proprio_from = PROPRIO_FROM_STAGE["full" if full else "fast"]
    if wrist_from == "course":
        wrist_from = WRIST_FROM_STAGE["full" if full else "fast"]
    for name, value in (("proprio_from", proprio_from), ("wrist_from", wrist_from)):
        if value is not None and not 0 <= value < len(stages):
            raise ValueError(f"{name} must be None or a stage index in [0, {len(stages) - 1}], got {value!r}")
    # the wrist camera's images only when a stage may need them (a resumed VLA may read them already)
    frames = load_action_frames(recipe.root, wrist=wrist_from is not None or start_from is not None)
    if ground_from is not None:  # what the VLA is taught to say: where the task's things start
        from vla_lessons.model.grounding import episode_grounding

        frames.grounding = episode_grounding(recipe.root)[frames.episodes]
    train, heldout = split_episodes(frames)
    stats = meta.stats
    env.seed_everything(stages[0].seed)
    model = course_vla_from_vlm(stats, vlm_dir, visual_position, proprio_from == 0)
    done, previous = 0, {"history": [], "seconds": {"train": 0.0}}
    if start_from is not None:
        from vla_lessons.model.vla import load_vla

        done, path = start_from
        model = load_vla(path)
        for name, value, has in (("proprio_from", proprio_from, model.config.proprio_dim > 0),
                                 ("wrist_from", wrist_from, model.config.num_images == 2),
                                 ("ground_from", ground_from, model.config.grounding_dim > 0)):
            if value is not None and value < done and not has:
                raise ValueError(f"{name}={value} is before the resumed stage {done}, but the VLA at {path} "
                                 "lacks that input: resume from an earlier stage or change the recipe")
        if (Path(path) / "metrics.json").is_file():  # the finished stages' history and time
            previous = json.loads((Path(path) / "metrics.json").read_text())
    t_data = time.perf_counter() - t0
    if progress:
        print(f"[vla] {len(train)} training steps from {int(train.episodes.max()) + 1} episodes, "
              f"{len(heldout)} held out; fine-tuning {' + '.join(str(c.steps) for c in stages)} steps", flush=True)
    history = [{"stage": 0, **h} for h in previous["history"]]
    seconds, offset = previous["seconds"]["train"], sum(c.steps for c in stages[:done])
    loc = None
    for k, config in enumerate(stages[done:], start=done):
        if proprio_from is not None and k == proprio_from and not model.config.proprio_dim:
            from vla_lessons.model.vla import add_proprio

            env.seed_everything(config.seed)
            model = add_proprio(model, stats["observation.state"])
        if wrist_from is not None and k == wrist_from and model.config.num_images == 1:
            from vla_lessons.model.vla import add_wrist_camera

            model = add_wrist_camera(model)
        if chunk is not None and k == chunk[0]:
            from vla_lessons.model.vla import add_l1_head, set_action_chunk

            if action_head == "l1":
                env.seed_everything(config.seed)
                model = add_l1_head(model, chunk[1])
            else:
                set_action_chunk(model, chunk[1])
        if ground_from is not None and k == ground_from and not model.config.grounding_dim:
            from vla_lessons.data.stats import compute_stats
            from vla_lessons.model.vla import add_grounding

            env.seed_everything(config.seed)
            model = add_grounding(model, compute_stats(train.grounding))
        if localise is not None and k >= localise.from_stage and loc is None:
            loc = start_localisation(model, localise, warm_up=k == localise.from_stage, progress=progress)
            model = loc["model"]
        callback = None
        if checkpoint_dir is not None and checkpoint_every:
            def callback(step, m, k=k):
                save_vla(m, Path(checkpoint_dir) / f"stage{k}_step_{step:05d}")
        result = finetune_vla(model, train, config, unnorm_key=UNNORM_KEY, progress=progress,
                              callback=callback, callback_every=checkpoint_every,
                              where=loc["train"] if loc else None, loc_head=loc["head"] if loc else None)
        if loc is not None:
            from vla_lessons.train.localise import localisation_error

            loc["after_stage"].append({"stage": k, **localisation_error(model, loc["head"], loc["heldout"])})
        history += [{**h, "stage": k, "step": h["step"] + offset} for h in result.history]
        seconds += result.seconds
        offset += config.steps
    heldout_metrics = evaluate_actions(model, heldout, unnorm_key=UNNORM_KEY)
    t_eval = time.perf_counter()
    save_vla(model, out_dir)
    from vla_lessons.model.vla import load_vla

    model = load_vla(out_dir)  # evaluate what was saved (float16 weights back in float32)
    results = evaluate_policy(vla_policy(model, UNNORM_KEY), episodes=eval_episodes, progress=progress)
    truth = None  # a grounding VLA once more, with the simulator's grounding: how well it acts, given where
    if model.config.grounding_dim:
        truth = success_table(evaluate_policy(true_grounding_policy(model, UNNORM_KEY), episodes=eval_episodes))
    expert = evaluate_expert(episodes=eval_episodes)
    t_eval = time.perf_counter() - t_eval
    summary = {
        "name": "vla", "path": str(out_dir), "full": bool(full), "unnorm_key": UNNORM_KEY,
        "dataset": {"name": recipe.name, "episodes": int(frames.episodes.max()) + 1, "frames": len(frames),
                    "train_frames": len(train), "heldout_frames": len(heldout)},
        "finetune": [asdict(c) for c in stages], "trainable": result.trainable,
        "proprio_from_stage": proprio_from, "wrist_from_stage": wrist_from,
        "action_chunk": None if chunk is None else {"from_stage": chunk[0], "size": chunk[1]},
        "action_head": model.config.action_head, "ground_from_stage": ground_from,
        "num_images": model.config.num_images, "visual_position": model.config.visual_position,
        "resumed_after_stage": done or None,
        "localise": None if loc is None else {"config": asdict(localise), "warmup": loc["warmup"],
                                              "heldout_after_stage": loc["after_stage"],
                                              "questions": len(loc["train"]), "heldout_questions": len(loc["heldout"]),
                                              "seconds": loc["seconds"]},
        "history": history,
        "heldout_teacher_forced": heldout_metrics,
        "closed_loop": {"episodes_per_family": eval_episodes, "vla": success_table(results),
                        **({"vla_true_grounding": truth} if truth is not None else {}),
                        "expert": success_table(expert),
                        "episodes": [{"family": r.family, "seed": r.seed, "success": r.success, "steps": r.steps}
                                     for r in results]},
        "seconds": {"data": t_data, "train": seconds, "eval": t_eval, "total": time.perf_counter() - t0},
    }
    summary["bytes"] = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def start_localisation(model, localise: LocaliseConfig, warm_up: bool = True, progress: bool = True) -> dict:
    """Set up the localisation objective on ``model``: render the scenes, add patch positions, make a head.

    Introduced in lesson 06. With ``warm_up`` the head, towers, projector and positions first
    train on the objective alone for ``localise.warmup_steps``. Returns ``{"model"`` (``model``, or
    a copy with learned 2-D patch positions), ``"head"``, ``"train"``, ``"heldout"`` (WhereData),
    ``"warmup"`` (the log, from step 0), ``"after_stage"`` (empty; the build appends to it),
    ``"seconds"}``.
    """
    from vla_lessons.model.vla import vla_from_vlm
    from vla_lessons.train.localise import LocalisationHead, localisation_error, render_where, train_localisation

    t0 = time.perf_counter()
    train = render_where(localise.scenes, localise.seed)
    heldout = render_where(localise.heldout_scenes, localise.seed + localise.scenes + 100_000, phrases=train.phrases)
    if model.patch_position is None:
        c = model.config
        model = vla_from_vlm(model, model.tokenizer, c.norm_stats, layout=c.action_layout, visual_position="learned-2d",
                             proprio_dim=c.proprio_dim, num_images=c.num_images)
    env.seed_everything(localise.seed)
    head = LocalisationHead.for_data(model, train)
    before = localisation_error(model, head, heldout)
    warmup = [{"step": 0, "loss": None, "median_cm": before["median_cm"]}]
    if progress:
        print(f"[vla] localisation: {len(train)} questions on {localise.scenes} scenes, "
              f"held-out {before['median_cm']:.1f} cm before training", flush=True)
    if warm_up and localise.warmup_steps:
        warmup += train_localisation(model, head, train, steps=localise.warmup_steps, batch_size=localise.batch_size,
                                     lr=localise.lr, seed=localise.seed, heldout=heldout, progress=progress)
    return {"model": model, "head": head, "train": train, "heldout": heldout, "warmup": warmup,
            "after_stage": [], "seconds": time.perf_counter() - t0}


def load_course_vla(path=None):
    """The committed VLA (``data/models/vla``) in float32, eval mode. Introduced in lesson 06."""
    from vla_lessons.model.vla import load_vla

    return load_vla(path or VLA_DIR)
