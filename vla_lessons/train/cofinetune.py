"""Co-fine-tuning (RT-2): does mixing VQA into the robot batches keep the VLM's answers alive?

Introduced in lesson 06 (``python -m vla_lessons.build cofinetune``; ``VLA_FULL=1`` for the full run).

Fine-tuning a VLM on robot actions alone teaches it to answer *every* prompt with action ids:
the questions it answered before fine-tuning come back as ``<reserved_...>`` tokens. RT-2
(Brohan et al., 2023) co-fine-tuned on robot data **and** the original vision-language data so the
model keeps what it learned from the web; OpenVLA fine-tuned on robot data only.

:func:`cofinetune_table` measures that trade on the course's models. For each ``vqa_ratio`` it
fine-tunes a copy of the *same* starting VLA (the lesson-05 VLM with the robot statistics), with
the same robot steps, the same VQA conversations, the same seed and the same number of steps and
examples per batch -- only the share of the batch given to VQA differs (so a higher ratio also
sees fewer robot examples: the comparison is at equal compute). Then it measures

* the held-out **action** metrics (teacher-forced ``loss``, ``action_accuracy``, ``l1``, on episodes
  the model never trained on; :func:`~vla_lessons.train.finetune.evaluate_actions`);
* the held-out **VQA** accuracy (exact match, scenes never trained on;
  :func:`~vla_lessons.model.train_vlm.vqa_accuracy`),

next to the VLM's own VQA accuracy before any fine-tuning (the reference, so the table reads as
*retention*). Captions are left out of the VQA score by default (:data:`RETENTION_KINDS`): the
VLM itself almost never reproduces a whole caption word for word, and their 40-token answers
dominate the evaluation time.

:func:`build_cofinetune` runs the table at the course's sizes (:data:`COFINETUNE_SIZES`) and
writes ``data/results/cofinetune.json``: a fast run on the committed ``tabletop_lessons`` (about
a minute, anywhere) or the full run on ``tabletop_train`` (about 20 minutes on one thread).
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

from .build_vla import UNNORM_KEY, split_episodes
from .finetune import ActionFrames, FinetuneConfig, evaluate_actions, finetune_vla

#: The VQA ratios of the course's table: robot only (OpenVLA), a quarter and a half of each batch VQA.
DEFAULT_RATIOS = (0.0, 0.25, 0.5)
#: Question kinds the retention score counts (captions left out: see the module docstring).
RETENTION_KINDS = ("colour", "shape", "count", "left_right", "nearest")
#: Where :func:`build_cofinetune` writes its table.
RESULTS_PATH = env.DATA_DIR / "results" / "cofinetune.json"


@dataclass(frozen=True)
class CofinetuneSizes:
    """The sizes of one co-fine-tuning run. Introduced in lesson 06.

    ``dataset``: the robot dataset (``tabletop_lessons`` in ``data/`` or ``tabletop_train`` in
    ``build/``); ``steps`` and ``batch_size`` per ratio; ``vqa_train_scenes`` / ``vqa_heldout_scenes``:
    scenes of :func:`~vla_lessons.model.vqa.vqa_dataset`'s train and held-out splits;
    ``max_heldout_frames``: cap on the held-out robot steps evaluated (None = all).
    """

    dataset: str
    steps: int
    batch_size: int
    vqa_train_scenes: int
    vqa_heldout_scenes: int
    lr: float = 3e-4
    max_heldout_frames: int | None = None


#: Fast: seconds to a minute on the committed data. Full: 3 ratios x 360 steps x batch 32 at about
#: 1 s a step, plus data and evaluation, about 20-23 minutes on one thread.
COFINETUNE_SIZES = {
    "fast": CofinetuneSizes("tabletop_lessons", steps=24, batch_size=8, vqa_train_scenes=60,
                            vqa_heldout_scenes=40),
    "full": CofinetuneSizes("tabletop_train", steps=360, batch_size=32, vqa_train_scenes=500,
                            vqa_heldout_scenes=120, max_heldout_frames=512),
}


def _check_ratios(ratios) -> tuple[float, ...]:
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__len__") or len(ratios) == 0:
        raise ValueError(f"ratios must be a non-empty sequence of VQA fractions in [0, 1), got {ratios!r}")
    out = []
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)):
            raise TypeError(f"every ratio must be a number in [0, 1), got {r!r}")
        if not (math.isfinite(float(r)) and 0.0 <= float(r) < 1.0):
            raise ValueError(f"every VQA ratio must be in [0, 1) (the fraction of a batch that is VQA; "
                             f"1 would leave no robot data), got {r!r}")
        out.append(float(r))
    if len(set(out)) != len(out):
        raise ValueError(f"ratios must be distinct, got {list(out)}")
    return tuple(out)


def fresh_copy(base):
    """A trainable copy of the VLA ``base`` (weights, tokenizer and statistics), ``base`` untouched.

    Introduced in lesson 06.
    """
    from vla_lessons.model.vla import vla_from_vlm

    return vla_from_vlm(base, base.tokenizer, base.config.norm_stats, layout=base.config.action_layout)


def cofinetune_table(ratios=DEFAULT_RATIOS, steps: int = 360, *, base, train: ActionFrames,
                     heldout: ActionFrames, vqa_train=None, vqa_heldout, batch_size: int = 32,
                     lr: float = 3e-4, seed: int = 0, unnorm_key: str = UNNORM_KEY,
                     kinds: tuple[str, ...] = RETENTION_KINDS, log_every: int = 10,
                     threads: int | None = 1, progress: bool = False) -> dict:
    """Fine-tune a copy of ``base`` at each VQA ratio; measure actions and VQA on held-out data.

    Introduced in lesson 06.

    Args:
        ratios: fractions of each batch given to VQA conversations, each in [0, 1).
        steps, batch_size, lr, seed: the :class:`FinetuneConfig` every ratio shares.
        base: the starting :class:`~vla_lessons.model.vla.PrismaticVLA` (the VLM plus statistics,
            e.g. :func:`~vla_lessons.train.build_vla.course_vla_from_vlm`); it is not modified.
        train, heldout: robot steps to train on / to measure on (:class:`ActionFrames`).
        vqa_train: :class:`~vla_lessons.model.vqa.VQAData` to co-fine-tune with; only needed when a
            ratio is above 0 (ratio 0 never reads it).
        vqa_heldout: VQAData of scenes no model trained on (the ``"heldout"`` split).
        kinds: question kinds the VQA accuracy counts.
        threads: torch threads for the whole run (1 is fastest on a busy 2-core machine).

    Returns:
        ``{"ratios", "kinds", "config", "vlm": {"vqa": {kind: acc, "all": acc}},
        "rows": [{"vqa_ratio", "actions": {"loss", "action_accuracy", "l1"}, "vqa": {...},
        "vqa_retention", "history", "seconds"}, ...]}``; ``vqa_retention`` is the row's VQA
        accuracy over the VLM's (1.0 = nothing forgotten).
    """
    from vla_lessons.model.vla import PrismaticVLA
    from vla_lessons.model.vqa import VQAData

    ratios = _check_ratios(ratios)
    if not isinstance(base, PrismaticVLA):
        raise TypeError(f"base must be a PrismaticVLA (see course_vla_from_vlm), got {type(base).__name__}")
    base.action_tokenizer.resolve_unnorm_key(unnorm_key)  # unknown key -> ValueError now
    if not isinstance(train, ActionFrames) or not isinstance(heldout, ActionFrames):
        raise TypeError("train and heldout must be ActionFrames (see load_action_frames)")
    if not isinstance(vqa_heldout, VQAData):
        raise TypeError(f"vqa_heldout must be a VQAData (vqa_dataset(n, 'heldout')), got {type(vqa_heldout).__name__}")
    if any(r > 0 for r in ratios) and not isinstance(vqa_train, VQAData):
        raise ValueError(f"ratios {[r for r in ratios if r > 0]} co-fine-tune with VQA: pass vqa_train, "
                         "a VQAData (vqa_dataset(n, 'train'))")
    configs = {r: FinetuneConfig(steps=steps, batch_size=batch_size, lr=lr, vqa_ratio=r, seed=seed,
                                 log_every=log_every) for r in ratios}  # validates steps, batch, lr
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _table(ratios, configs, base, train, heldout, vqa_train, vqa_heldout, unnorm_key, kinds,
                      threads, progress)
    finally:
        torch.set_num_threads(before)


def _table(ratios, configs, base, train, heldout, vqa_train, vqa_heldout, unnorm_key, kinds, threads, progress):
    from vla_lessons.model.train_vlm import vqa_accuracy

    steps = configs[ratios[0]].steps
    reference = vqa_accuracy(base, base.tokenizer, vqa_heldout, kinds=kinds)
    out = {"ratios": list(ratios), "kinds": list(kinds),
           "config": {k: v for k, v in asdict(configs[ratios[0]]).items() if k != "vqa_ratio"},
           "vlm": {"vqa": reference}, "rows": []}
    for r in ratios:
        start = time.perf_counter()
        model = fresh_copy(base)
        if progress:
            print(f"[cofinetune] vqa_ratio {r}: fine-tuning {steps} steps", flush=True)
        result = finetune_vla(model, train, configs[r], unnorm_key=unnorm_key,
                              vqa=vqa_train if r > 0 else None, progress=progress, threads=threads)
        actions = evaluate_actions(model, heldout, unnorm_key=unnorm_key)
        vqa = vqa_accuracy(model, model.tokenizer, vqa_heldout, kinds=kinds)
        out["rows"].append({
            "vqa_ratio": r, "actions": actions, "vqa": vqa,
            "vqa_retention": vqa["all"] / reference["all"] if reference["all"] > 0 else float("nan"),
            "history": result.history, "seconds": time.perf_counter() - start})
        del model
    return out


def print_table(table: dict) -> None:
    """Print one line per ratio: held-out action accuracy, L1, VQA accuracy and retention.

    Introduced in lesson 06. ``table`` is what :func:`cofinetune_table` returns (or the JSON file);
    the JSON file's blind majority-answer baseline gets a line of its own.
    """
    print(f"{'':<16}{'action acc':>11}{'L1':>8}{'VQA acc':>9}{'retention':>11}")
    print(f"{'VLM (before)':<16}{'-':>11}{'-':>8}{table['vlm']['vqa']['all']:>9.3f}{1.0:>11.2f}")
    if "blind_majority_answer" in table:
        blind = table["blind_majority_answer"]["all"]
        print(f"{'blind guess':<16}{'-':>11}{'-':>8}{blind:>9.3f}{blind / table['vlm']['vqa']['all']:>11.2f}")
    for row in table["rows"]:
        print(f"{'vqa_ratio ' + format(row['vqa_ratio'], '.2f'):<16}{row['actions']['action_accuracy']:>11.3f}"
              f"{row['actions']['l1']:>8.4f}{row['vqa']['all']:>9.3f}{row['vqa_retention']:>11.2f}")


def _load_frames(sizes: CofinetuneSizes, full: bool):
    """``(frames, stats, root)`` of the run's robot dataset; a clear error when it is not recorded."""
    from vla_lessons.data.layout import DatasetNotFoundError
    from vla_lessons.data.reader import load_meta
    from vla_lessons.data.recipes import course_recipes

    from .finetune import load_action_frames

    recipe = course_recipes(full)[sizes.dataset]
    expected = recipe.episodes_per_family * len(recipe.families)
    try:
        meta = load_meta(recipe.root)
    except (DatasetNotFoundError, FileNotFoundError) as err:
        raise ValueError(f"{sizes.dataset} is not recorded at {recipe.root}; record it first: "
                         f"{'VLA_FULL=1 ' if full else ''}python -m vla_lessons.build data --only {sizes.dataset}") from err
    if meta.total_episodes != expected:
        raise ValueError(f"{recipe.root} holds {meta.total_episodes} episodes, this mode expects {expected}; "
                         f"re-record it: {'VLA_FULL=1 ' if full else ''}python -m vla_lessons.build data "
                         f"--only {sizes.dataset}")
    return load_action_frames(recipe.root, wrist=False), meta.stats, recipe.root


def build_cofinetune(full: bool | None = None, out_path=None, *, ratios=DEFAULT_RATIOS,
                     sizes: CofinetuneSizes | None = None, seed: int = 0, threads: int = 1,
                     progress: bool = True) -> dict:
    """Run :func:`cofinetune_table` at the course's sizes and write it to ``data/results/cofinetune.json``.

    Introduced in lesson 06. ``full`` defaults to the ``VLA_FULL`` switch; ``sizes`` overrides
    :data:`COFINETUNE_SIZES`. The robot episodes are split as the course's VLA's (the last 5% held
    out, :func:`~vla_lessons.train.build_vla.split_episodes`); the JSON also holds the blind
    majority-answer baseline on the same held-out questions. Returns the summary it wrote.
    """
    from vla_lessons.model.vqa import blind_accuracy, vqa_dataset

    from .build_vla import course_vla_from_vlm

    full = env.full_mode() if full is None else full
    sizes = sizes or COFINETUNE_SIZES["full" if full else "fast"]
    out_path = Path(out_path) if out_path is not None else RESULTS_PATH
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    try:
        frames, stats, root = _load_frames(sizes, full)
        train, heldout = split_episodes(frames)
        if sizes.max_heldout_frames is not None and len(heldout) > sizes.max_heldout_frames:
            heldout = heldout.subset(np.arange(sizes.max_heldout_frames))
        vqa_train = vqa_dataset(sizes.vqa_train_scenes, "train")
        vqa_heldout = vqa_dataset(sizes.vqa_heldout_scenes, "heldout")
        t_data = time.perf_counter() - t0
        env.seed_everything(seed)
        base = course_vla_from_vlm(stats)
        table = cofinetune_table(ratios, sizes.steps, base=base, train=train, heldout=heldout,
                                 vqa_train=vqa_train, vqa_heldout=vqa_heldout, batch_size=sizes.batch_size,
                                 lr=sizes.lr, seed=seed, threads=threads, progress=progress)
    finally:
        torch.set_num_threads(before)
    kinds = tuple(table["kinds"])
    summary = {
        "name": "cofinetune", "full": bool(full), "seed": seed, "threads": threads,
        "sizes": asdict(sizes),
        "dataset": {"name": sizes.dataset, "root": _relative(root), "episodes": int(frames.episodes.max()) + 1,
                    "train_frames": len(train), "heldout_frames": len(heldout)},
        "vqa_questions": {"train": len(vqa_train), "heldout": len(vqa_heldout.of_kind(*kinds))},
        "blind_majority_answer": blind_accuracy(vqa_train, _only_kinds(vqa_heldout, kinds), backoff=True),
        **table,
        "seconds": {"data": t_data, "total": time.perf_counter() - t0},
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _relative(path) -> str:
    """``path`` relative to the repository when it is inside it (the JSON is committed)."""
    try:
        return str(Path(path).resolve().relative_to(env.REPO_ROOT))
    except ValueError:
        return str(path)


def _only_kinds(data, kinds):
    from vla_lessons.model.vqa import VQAData

    return VQAData(data.images, data.seeds, data.things, data.grippers, data.of_kind(*kinds), data.split)


def load_cofinetune(path=None) -> dict:
    """The table :func:`build_cofinetune` wrote (default ``data/results/cofinetune.json``).

    Introduced in lesson 06.
    """
    return env.read_results(path if path is not None else RESULTS_PATH, "co-fine-tuning results", "cofinetune")


if __name__ == "__main__":
    summary = build_cofinetune()
    print_table(summary)
    print(f"wrote {RESULTS_PATH} in {summary['seconds']['total']:.0f} s")
