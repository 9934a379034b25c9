"""The OpenVLA paper's fine-tuning strategies (Table 1) on the mini VLA, with measured memory.

Introduced in lesson 07.

OpenVLA (Kim et al., 2024, Section 5.3) fine-tuned the same model on the same robot data six
ways and compared success, trainable parameters and GPU memory. The module sets are those of
:func:`vla_lessons.model.openvla.set_trainable` (the real 7B's counts), here applied to the
mini VLA, whose parts have the same names (``vision_backbone``, ``projector``,
``language_model``):

* ``full`` -- every parameter;
* ``frozen_vision`` -- the projector and the Llama; both vision towers frozen;
* ``last_layer`` -- "only the last layer of OpenVLA's transformer backbone and the token
  embedding matrix": the last Llama block, its final norm, ``embed_tokens`` and ``lm_head``;
* ``sandwich`` -- the vision towers, the projector and ``last_layer``'s set;
* ``lora_r32``, ``lora_r64`` -- OpenVLA's LoRA recipe (:func:`~vla_lessons.train.lora.lora_vla`)
  at rank 32 and 64: every ``nn.Linear`` but ``lm_head`` gets a LoRA update, nothing else trains.

One more row, not in the paper (:data:`EXTRA_STRATEGIES`): ``lora_r32_lm_head``, LoRA r=32 plus a
trainable ``lm_head`` (peft's ``modules_to_save``). The paper adapted OpenVLA, whose action-token
rows of ``lm_head`` had been trained on 970k robot episodes; the course turns a VLM into a VLA, and
those 256 rows have never been trained (text never produces the reserved ids). LoRA's
``"all-linear"`` leaves ``lm_head`` frozen, which a 150-step check showed to be what holds plain
LoRA back here (held-out loss 5.28 with a frozen ``lm_head``, 2.93 with it trained, 2.93 for full
fine-tuning; batch 32, lr 1e-3 for LoRA, 3e-4 for full).

:func:`prepare` sets a model up for one strategy; :func:`measure_training_memory` **measures**
what one training step keeps in memory (weights, gradients, AdamW state, activations saved for
backward); :func:`run_strategies` trains each strategy from the same VLA on the same batches
and evaluates it; :func:`build_strategies` writes ``data/results/strategies.json``
(``python -m vla_lessons.build strategies``; ``VLA_FULL=1`` for the full run).
"""

from __future__ import annotations

import copy
import json
import time
import weakref
from pathlib import Path

import numpy as np
import torch

from vla_lessons import env

from .finetune import FinetuneConfig, action_loss, evaluate_actions, finetune_vla, vla_policy

#: The strategies of the paper's Table 1, in its order.
STRATEGIES = ("full", "last_layer", "frozen_vision", "sandwich", "lora_r32", "lora_r64")
#: Strategies the course adds (not in the paper): LoRA with a trainable output layer.
EXTRA_STRATEGIES = ("lora_r32_lm_head",)
ALL_STRATEGIES = STRATEGIES + EXTRA_STRATEGIES
#: What each strategy trains (on the mini VLA and on OpenVLA-7B alike).
DESCRIPTIONS = {
    "full": "every parameter",
    "last_layer": "last Llama block + final norm + token embeddings + lm_head",
    "frozen_vision": "projector + Llama (both vision towers frozen)",
    "sandwich": "vision towers + projector + last_layer's set",
    "lora_r32": "LoRA r=32, alpha=16 on every Linear but lm_head",
    "lora_r64": "LoRA r=64, alpha=16 on every Linear but lm_head",
    "lora_r32_lm_head": "lora_r32 + lm_head trained in full (peft modules_to_save; not in the paper)",
}
#: Peak learning rates: 3e-4 for the full-parameter strategies (the course VLA's) and 1e-3 for LoRA,
#: whose update starts at zero and is scaled by alpha/r (0.5 at r=32, 0.25 at r=64). OpenVLA's
#: script also gives LoRA a larger rate (5e-4) than its full fine-tuning runs (2e-5). A check of
#: 150 steps (batch 32, tabletop_train, held-out loss) found plain LoRA stuck near 5.2-5.35 at any
#: rate (1e-3: 5.28, 3e-3: 5.21, 1e-2: 5.35) and LoRA with a trainable lm_head at 1e-3 level with
#: full fine-tuning (2.93 both): the rate is not LoRA's problem here, the frozen lm_head is.
LEARNING_RATES = {"full": 3e-4, "last_layer": 3e-4, "frozen_vision": 3e-4, "sandwich": 3e-4,
                  "lora_r32": 1e-3, "lora_r64": 1e-3, "lora_r32_lm_head": 1e-3}
#: **Quoted** from the OpenVLA paper's Table 1 (33 rollouts per strategy on Franka-Tabletop tasks,
#: mean success +- standard error, GPU memory at batch 16; ``fsdp``: sharded over 2 GPUs).
#: For comparison only; nothing here computes them.
PAPER_TABLE1 = {
    "full": {"success_percent": 69.7, "stderr_percent": 7.2, "trainable_M": 7188.1, "vram_GB": 163.3, "fsdp": True},
    "last_layer": {"success_percent": 30.3, "stderr_percent": 6.1, "trainable_M": 465.1, "vram_GB": 51.4,
                   "fsdp": False},
    "frozen_vision": {"success_percent": 47.0, "stderr_percent": 6.9, "trainable_M": 6760.4, "vram_GB": 156.2,
                      "fsdp": True},
    "sandwich": {"success_percent": 62.1, "stderr_percent": 7.9, "trainable_M": 914.2, "vram_GB": 64.0,
                 "fsdp": False},
    "lora_r32": {"success_percent": 68.2, "stderr_percent": 7.5, "trainable_M": 97.6, "vram_GB": 59.7,
                 "fsdp": False},
    "lora_r64": {"success_percent": 68.2, "stderr_percent": 7.8, "trainable_M": 195.2, "vram_GB": 60.5,
                 "fsdp": False},
}
#: The parts of :func:`measure_training_memory`, in the order they add up to ``total``.
MEMORY_PARTS = ("weights", "gradients", "optimizer", "activations")
#: Where :func:`build_strategies` writes (committed).
RESULTS_FILE = env.DATA_DIR / "results" / "strategies.json"
#: Run sizes of :func:`build_strategies`. Fast: a smoke run on the committed ``tabletop_lessons``
#: (works anywhere, 1-2 minutes). Full: ``tabletop_train`` (900 episodes), sized for <= 45 minutes
#: on one thread (about 1 s per step of full fine-tuning at batch 32, less for the freezing
#: strategies; about 1 minute of evaluation per strategy).
RUNS = {
    "fast": dict(dataset="tabletop_lessons", heldout_fraction=0.2, steps=10, batch_size=8, eval_episodes=1,
                 log_every=5),
    "full": dict(dataset="tabletop_train", heldout_fraction=0.05, steps=300, batch_size=32, eval_episodes=10,
                 log_every=25),
}


def _check_strategy(strategy) -> str:
    if strategy not in ALL_STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {strategy!r}; known: {list(ALL_STRATEGIES)}")
    return strategy


def prepare(model, strategy: str):
    """Set ``model`` up for ``strategy``: ``(model_to_train, parameters_to_train)``.

    Introduced in lesson 07. The four freezing strategies change ``requires_grad`` in place
    (:func:`vla_lessons.model.openvla.set_trainable`'s module sets) and return ``model`` itself;
    ``lora_r32`` / ``lora_r64`` wrap it with peft (:func:`~vla_lessons.train.lora.lora_vla`) and
    return the ``PeftModel`` (``lora_r32_lm_head`` also trains a copy of ``lm_head``).
    ``parameters_to_train`` is the list of parameters that require grad.
    An unknown strategy is a ``ValueError``.
    """
    from vla_lessons.model.openvla import set_trainable

    from .lora import lora_vla

    _check_strategy(strategy)
    if strategy == "lora_r32_lm_head":
        model = lora_vla(model, 32, modules_to_save=["lm_head"])
    elif strategy.startswith("lora_r"):
        model = lora_vla(model, int(strategy.removeprefix("lora_r")))
    else:
        set_trainable(model, strategy)
    return model, [p for p in model.parameters() if p.requires_grad]


def _storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a shared storage counted once)."""
    seen = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def measure_training_memory(model, parameters, frames, *, batch_size: int = 32, unnorm_key: str | None = None,
                            seed: int = 0) -> dict[str, int]:
    """Bytes of the tensors one AdamW training step of ``model`` keeps, by part (a measurement).

    Introduced in lesson 07. One step on ``batch_size`` steps of ``frames`` (seeded), training
    ``parameters`` (from :func:`prepare`); the model's weights are restored afterwards. Parts, as
    the paper's GPU memory is made of:

    * ``weights`` -- every parameter of the model, trainable or frozen (``trainable_weights`` is
      the trainable share of it, not a separate part);
    * ``gradients`` -- the ``.grad`` tensors after ``backward()`` (None for a frozen parameter
      or one the loss does not reach);
    * ``optimizer`` -- AdamW's state tensors after ``step()`` (two moments and a step count per
      parameter that had a gradient);
    * ``activations`` -- the tensors autograd saved for backward during the forward pass,
      captured with ``torch.autograd.graph.saved_tensors_hooks`` and counted when the loss is
      computed: distinct storages still alive (a branch the loss does not use, such as the
      vision towers' last block, is freed on the way), a parameter saved by an op not counted
      again (it is in ``weights``).

    ``total`` is their sum. It counts *tensors*, not the process's memory (RSS): no allocator
    slack, no temporaries freed during the forward pass, and it is an upper bound of the peak in
    one respect -- activations are freed during ``backward()`` while gradients appear. All bytes
    are float32 here (4 per number), where the paper trained in bf16 with fp32 states.
    """
    if batch_size < 1 or len(frames) == 0:
        raise ValueError(f"need batch_size >= 1 and some frames, got {batch_size} and {len(frames)} frames")
    params = [p for p in parameters if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    all_params = list(model.parameters())
    param_storages = {p.untyped_storage().data_ptr() for p in all_params}
    saved: list[weakref.ref] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(weakref.ref(t))  # weak: a branch the loss never uses is freed during the forward
        return t

    snapshot = [p.detach().clone() for p in params]
    index = np.random.default_rng(seed).integers(0, len(frames), batch_size)
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss, _, _ = action_loss(model, frames, index, unnorm_key=unnorm_key)
        alive = [t for t in (ref() for ref in saved) if t is not None]
        activations = _storage_bytes(t for t in alive if t.untyped_storage().data_ptr() not in param_storages)
        del alive
        loss.backward()
        gradients = _storage_bytes(p.grad for p in params if p.grad is not None)
        optimizer.step()
        states = [v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)]
        optimizer_bytes = _storage_bytes(states)
    finally:
        with torch.no_grad():
            for p, s in zip(params, snapshot):
                p.copy_(s)
                p.grad = None
        model.train(was_training)
    parts = {"weights": _storage_bytes(all_params), "gradients": gradients, "optimizer": optimizer_bytes,
             "activations": activations}
    return {**parts, "total": sum(parts.values()), "trainable_weights": _storage_bytes(params)}


def _count(model, trainable_only: bool) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def run_strategies(strategies, frames_train, frames_heldout, *, steps: int, batch_size: int, eval_episodes: int,
                   base_model=None, stats: dict | None = None, learning_rates: dict | None = None,
                   unnorm_key: str | None = None, seed: int = 0, log_every: int = 10,
                   progress: bool = False) -> list[dict]:
    """Fine-tune each strategy from the same VLA on the same batches; measure and evaluate it.

    Introduced in lesson 07.

    Args:
        strategies: names from :data:`ALL_STRATEGIES`.
        frames_train, frames_heldout: :class:`~vla_lessons.train.finetune.ActionFrames`.
        steps, batch_size: :class:`~vla_lessons.train.finetune.FinetuneConfig` for every strategy
            (same seed, so the same batches and augmentation).
        eval_episodes: closed-loop episodes per task family (0 skips the rollouts).
        base_model: the VLA every strategy starts from (deep-copied); default: the lesson-05 VLM
            turned into a VLA with ``stats`` (:func:`~vla_lessons.train.build_vla.course_vla_from_vlm`).
        learning_rates: peak learning rate per strategy (default :data:`LEARNING_RATES`).
        unnorm_key: the statistics the actions are encoded with (default ``"tabletop"`` when the
            course VLA is built here, else the model's only one).

    Returns one dict per strategy: ``strategy``, ``lr``, ``trainable``, ``total_params``,
    ``memory`` (:func:`measure_training_memory`, bytes), ``heldout`` (teacher-forced ``loss``,
    ``action_accuracy``, ``l1``), ``closed_loop`` (:func:`~vla_lessons.deploy.evaluate.success_table`
    or None), ``history`` (logged ``step``, ``loss``, ``action_accuracy``) and ``seconds``. LoRA
    models are merged (``merge_and_unload``) before they are evaluated.
    """
    from vla_lessons.deploy.evaluate import evaluate_policy, success_table

    strategies = [_check_strategy(s) for s in strategies]
    if not strategies:
        raise ValueError("give at least one strategy")
    if isinstance(eval_episodes, bool) or not isinstance(eval_episodes, int) or eval_episodes < 0:
        raise ValueError(f"eval_episodes must be an int >= 0, got {eval_episodes!r}")
    learning_rates = {**LEARNING_RATES, **(learning_rates or {})}
    if base_model is None:
        if stats is None:
            raise ValueError("give base_model or the dataset statistics stats to build the course VLA from")
        from .build_vla import UNNORM_KEY, course_vla_from_vlm

        base_model = course_vla_from_vlm(stats)
        unnorm_key = unnorm_key or UNNORM_KEY
    rows = []
    for strategy in strategies:
        t0 = time.perf_counter()
        env.seed_everything(seed)
        model, params = prepare(copy.deepcopy(base_model), strategy)
        memory = measure_training_memory(model, params, frames_train, batch_size=batch_size,
                                         unnorm_key=unnorm_key, seed=seed)
        config = FinetuneConfig(steps=steps, batch_size=batch_size, lr=learning_rates[strategy],
                                log_every=log_every, seed=seed)
        if progress:
            print(f"[strategies] {strategy}: {sum(p.numel() for p in params):,} trainable, lr {config.lr:g}",
                  flush=True)
        result = finetune_vla(model, frames_train, config, unnorm_key=unnorm_key, parameters=params,
                              progress=progress)
        row = {"strategy": strategy, "description": DESCRIPTIONS[strategy], "lr": config.lr,
               "trainable": sum(p.numel() for p in params), "total_params": _count(model, False),
               "memory": memory}
        if strategy.startswith("lora_"):
            model = model.merge_and_unload()
        t1 = time.perf_counter()
        row["heldout"] = evaluate_actions(model, frames_heldout, unnorm_key=unnorm_key)
        results = (evaluate_policy(vla_policy(model, unnorm_key), episodes=eval_episodes)
                   if eval_episodes else None)
        row["closed_loop"] = success_table(results) if results else None
        row["history"] = [{k: h[k] for k in ("step", "loss", "action_accuracy")} for h in result.history]
        row["seconds"] = {"train": result.seconds, "eval": time.perf_counter() - t1,
                          "total": time.perf_counter() - t0}
        if progress:
            rate = row["closed_loop"]["all"]["rate"] if row["closed_loop"] else float("nan")
            print(f"[strategies] {strategy}: held-out accuracy {row['heldout']['action_accuracy']:.3f}, "
                  f"success {rate:.2f}, {row['seconds']['total']:.0f} s", flush=True)
        rows.append(row)
    return rows


def _training_data(run: dict, full: bool):
    """``(frames, stats, dataset summary)`` of the run's dataset, recorded first when missing."""
    from vla_lessons.data.layout import DatasetNotFoundError
    from vla_lessons.data.reader import load_meta
    from vla_lessons.data.recipes import build_dataset, course_recipes

    from .finetune import load_action_frames

    recipe = course_recipes(full)[run["dataset"]]
    try:
        meta = load_meta(recipe.root)
        if meta.total_episodes != recipe.episodes_per_family * len(recipe.families):
            raise DatasetNotFoundError(recipe.root, f"{recipe.name} of this mode's size")
    except (DatasetNotFoundError, FileNotFoundError, ValueError):
        if recipe.committed:
            raise
        print(f"[strategies] recording {recipe.name} first", flush=True)
        build_dataset(recipe)
        meta = load_meta(recipe.root)
    return load_action_frames(recipe.root, wrist=False), meta.stats, recipe.name


def build_strategies(full: bool | None = None, out=None, *, strategies=ALL_STRATEGIES,
                     progress: bool = True) -> dict:
    """Run the strategies (:func:`run_strategies`) and write the results to ``data/results/strategies.json``.

    Introduced in lesson 07. ``full`` (default ``VLA_FULL``) picks :data:`RUNS`: fast mode trains
    10 steps per strategy on the committed ``tabletop_lessons`` (1-2 minutes, any machine); full
    mode trains 300 steps of batch 32 on ``tabletop_train`` and rolls each strategy out 10
    episodes per family (about 40 minutes for the 7 strategies on one thread). Returns the
    summary it writes.
    """
    from .build_vla import UNNORM_KEY, split_episodes

    full = env.full_mode() if full is None else bool(full)
    run = RUNS["full" if full else "fast"]
    t0 = time.perf_counter()
    frames, stats, dataset = _training_data(run, full)
    train, heldout = split_episodes(frames, run["heldout_fraction"])
    if progress:
        print(f"[strategies] {dataset}: {len(train)} training steps, {len(heldout)} held out; "
              f"{run['steps']} steps of batch {run['batch_size']} per strategy", flush=True)
    rows = run_strategies(strategies, train, heldout, steps=run["steps"], batch_size=run["batch_size"],
                          eval_episodes=run["eval_episodes"], stats=stats, unnorm_key=UNNORM_KEY,
                          log_every=run["log_every"], progress=progress)
    summary = {
        "name": "strategies", "full": full,
        "dataset": {"name": dataset, "episodes": int(frames.episodes.max()) + 1, "train_frames": len(train),
                    "heldout_frames": len(heldout)},
        "settings": {**run, "seed": 0, "learning_rates": {r["strategy"]: r["lr"] for r in rows},
                     "threads": 1},
        "strategies": rows,
        "paper_table1": PAPER_TABLE1,
        "seconds": time.perf_counter() - t0,
    }
    out = Path(out) if out is not None else RESULTS_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def load_strategies(path=None) -> dict:
    """The summary :func:`build_strategies` wrote (``data/results/strategies.json`` by default).

    Introduced in lesson 07. A missing file is a ``FileNotFoundError`` that says how to build it.
    """
    return env.read_results(path if path is not None else RESULTS_FILE, "strategy results", "strategies")


if __name__ == "__main__":
    torch.set_num_threads(1)
    build_strategies()
