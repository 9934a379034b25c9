"""Pretraining the mini Prismatic VLM on scene captions and questions, and measuring it.

Introduced in lesson 05.

LLaVA trains a VLM in two stages:

1. **align** -- only the projector learns, on captions: the visual tokens are pulled into the
   space the (frozen, pretrained) language model reads;
2. **finetune** -- projector and language model learn together on instructions and questions.

Prismatic found the align stage unnecessary; the course's default recipe is its single
"finetune" stage (:func:`default_recipe` says why), and a recipe can still list both. Each
training example is a *conversation* about one image (all its questions, in a random order), as
in LLaVA's data: the 64 visual tokens are computed once for five or six answers.

The vision backbone stays frozen in every stage (Prismatic found that fine-tuning it hurts a VLM;
OpenVLA unfreezes it later, for actions, in lesson 06). A frozen backbone has one more benefit
on a CPU: its patch features are computed **once** per image and cached, so a training step
only runs the projector and the Llama.

Everything is seeded (the initialisation by :func:`~vla_lessons.model.vlm.build_vlm`, the batch
order by ``recipe.seed``), fp32 on the CPU, AdamW with linear warmup and cosine decay, the loss on
answer tokens only. :func:`vqa_accuracy` answers held-out questions greedily and counts exact
matches per question kind.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from vla_lessons import env

from .vlm import PrismaticVLM, decode_answers, encode_conversations, encode_prompts
from .vqa import KINDS, VQAData

#: Parts of the model a stage can train.
PARTS = ("vision", "projector", "llm")


@dataclass(frozen=True)
class VLMStage:
    """One training stage: which parts learn, on which question kinds, for how many steps.

    Introduced in lesson 05. ``trainable`` holds names from :data:`PARTS`; ``kinds`` names from
    :data:`~vla_lessons.model.vqa.KINDS` (the align stage uses ``("caption",)``).
    """

    name: str
    steps: int
    lr: float
    trainable: tuple[str, ...] = ("projector", "llm")
    kinds: tuple[str, ...] = KINDS
    warmup_fraction: float = 0.05

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"stage {self.name!r}: steps must be a positive int, got {self.steps!r}")
        if not isinstance(self.lr, (int, float)) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"stage {self.name!r}: lr must be a positive number, got {self.lr!r}")
        bad = [p for p in self.trainable if p not in PARTS] if self.trainable else ["(none)"]
        if bad:
            raise ValueError(f"stage {self.name!r}: trainable parts must be a non-empty subset of {PARTS}, got {bad}")
        bad = [k for k in self.kinds if k not in KINDS] if self.kinds else ["(none)"]
        if bad:
            raise ValueError(f"stage {self.name!r}: kinds must be a non-empty subset of {KINDS}, got {bad}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"stage {self.name!r}: warmup_fraction must be in [0, 1), got {self.warmup_fraction}")


@dataclass(frozen=True)
class VLMRecipe:
    """The whole pretraining: its stages and the optimiser settings they share.

    Introduced in lesson 05. A batch is ``batch_size`` *images*, each with a conversation of its
    questions in a random order (at most ``max_turns`` of them; None = all).
    """

    stages: tuple[VLMStage, ...]
    batch_size: int = 16
    weight_decay: float = 0.01
    clip_grad: float = 1.0
    min_lr_fraction: float = 0.1
    max_turns: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not self.stages or not all(isinstance(s, VLMStage) for s in self.stages):
            raise ValueError("a recipe needs at least one VLMStage")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


#: Data and steps of the course's VLM: (train scenes, held-out scenes, finetune steps), fast and full.
COURSE_SIZES = {"fast": (600, 200, 150), "full": (2500, 300, 800)}


def default_recipe(full: bool | None = None, seed: int = 0, align_steps: int = 0) -> VLMRecipe:
    """The course's recipe: one "finetune" stage (projector + Llama) on every question kind.

    Introduced in lesson 05. ``full`` defaults to the ``VLA_FULL`` switch (:func:`vla_lessons.env.pick`).

    Why one stage: Prismatic (Karamcheti et al., 2024) found that skipping LLaVA's align stage
    costs nothing and saves compute, and here the Llama starts from random weights, so a frozen
    language model offers nothing to align to. ``align_steps > 0`` puts LLaVA's align stage
    (projector only, captions, lr 1e-3) in front, to compare. The learning rate (2.5e-4) was
    chosen on held-out questions: at 1e-3 the from-scratch Llama learns the answers' priors and
    never starts to look at the image within the budget.
    """
    full = env.full_mode() if full is None else full
    steps = COURSE_SIZES["full" if full else "fast"][2]
    stages = (VLMStage("finetune", steps=steps, lr=2.5e-4, trainable=("projector", "llm")),)
    if align_steps:
        stages = (VLMStage("align", steps=align_steps, lr=1e-3, trainable=("projector",), kinds=("caption",)),
                  *stages)
    return VLMRecipe(stages=stages, batch_size=16, seed=seed)


@dataclass
class TrainResult:
    """What :func:`train_vlm` returns: the loss history and the time it took.

    Introduced in lesson 05. ``history`` has one dict per step: ``step``, ``stage``, ``loss``, ``lr``.
    """

    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    feature_seconds: float = 0.0

    def losses(self, stage: str | None = None) -> np.ndarray:
        """The per-step losses (of one stage, or all), float64 (steps,)."""
        return np.array([h["loss"] for h in self.history if stage is None or h["stage"] == stage])


# ----------------------------------------------------------------------------- helpers


def lr_at(step: int, steps: int, lr: float, warmup_fraction: float, min_fraction: float) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``min_fraction * lr`` (step counts from 0).

    Introduced in lesson 05.
    """
    warmup = max(1, int(round(warmup_fraction * steps)))
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress)))


def part_modules(model: PrismaticVLM) -> dict[str, torch.nn.Module]:
    """``{"vision": ..., "projector": ..., "llm": ...}``: the modules behind :data:`PARTS`."""
    return {"vision": model.vision_backbone, "projector": model.projector, "llm": model.language_model}


def set_trainable(model: PrismaticVLM, parts) -> int:
    """Make exactly ``parts`` trainable (``requires_grad``); return the number of trainable parameters.

    Introduced in lesson 05.
    """
    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise ValueError(f"unknown parts {bad}; known: {PARTS}")
    for name, module in part_modules(model).items():
        module.requires_grad_(name in parts)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def cache_image_features(model: PrismaticVLM, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    """The frozen backbone's fused patch features of every image: float32 (N, num_patches, d).

    Introduced in lesson 05. ``images`` are uint8 (N, H, W, 3).
    """
    was_training = model.training
    model.eval()
    try:
        chunks = [model.image_features(model.preprocess(images[i:i + batch_size]))
                  for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


def blank_images(n: int, size: int, value: int = 128) -> np.ndarray:
    """``n`` uniform grey uint8 images (n, size, size, 3): what a "blind" model is shown.

    Introduced in lesson 05.
    """
    return np.full((n, size, size, 3), value, dtype=np.uint8)


# ----------------------------------------------------------------------------- training


def train_vlm(model: PrismaticVLM, tokenizer, data: VQAData, recipe: VLMRecipe | None = None, *,
              progress: bool = True, features: torch.Tensor | None = None) -> TrainResult:
    """Pretrain ``model`` in place on ``data`` with ``recipe`` (default :func:`default_recipe`).

    Introduced in lesson 05.

    Each step draws ``batch_size`` scenes (a seeded reshuffle every pass over them), builds one
    conversation per scene from its questions of the stage's kinds, ``<s> [image] In: q1\\nOut:
    a1</s>In: q2...``, with labels on the answers and their ``</s>`` only, and takes one AdamW step
    on the stage's trainable parts, the gradient norm clipped to ``clip_grad``.
    While no stage trains ``"vision"`` the backbone runs once per image (``features`` may pass a
    cache from :func:`cache_image_features`). Progress: a tqdm bar with the running loss.
    """
    recipe = recipe or default_recipe()
    if not isinstance(data, VQAData) or not data.samples:
        raise ValueError("data must be a VQAData with samples (see vqa.vqa_dataset)")
    from .text_tokenizer import check_layout

    check_layout(tokenizer)
    if len(tokenizer) != model.vocab_size:
        raise ValueError(f"tokenizer has {len(tokenizer)} ids but the model's vocabulary has {model.vocab_size}")
    vision_frozen = not any("vision" in s.trainable for s in recipe.stages)
    result = TrainResult()
    start = time.perf_counter()
    if vision_frozen and features is None:
        features = cache_image_features(model, data.images)
    result.feature_seconds = time.perf_counter() - start
    pixels = None if vision_frozen else model.preprocess(data.images)
    generator = torch.Generator().manual_seed(recipe.seed)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=recipe.total_steps, desc="VLM pretraining")
    model.train()
    step0 = 0
    try:
        for stage in recipe.stages:
            by_scene: dict[int, list] = {}
            for sample in data.samples:
                if sample.kind in stage.kinds:
                    by_scene.setdefault(sample.scene, []).append(sample)
            pool = sorted(by_scene)
            if not pool:
                raise ValueError(f"stage {stage.name!r}: no samples of kinds {stage.kinds} in the data")
            set_trainable(model, stage.trainable)
            params = [p for p in model.parameters() if p.requires_grad]
            decay = [p for p in params if p.ndim >= 2]
            no_decay = [p for p in params if p.ndim < 2]
            optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                                           {"params": no_decay, "weight_decay": 0.0}], lr=stage.lr)
            order: list[int] = []
            for i in range(stage.steps):
                if len(order) < recipe.batch_size:
                    order += torch.randperm(len(pool), generator=generator).tolist()
                scenes = [pool[j] for j in order[: recipe.batch_size]]
                del order[: recipe.batch_size]
                conversations = []
                for scene in scenes:
                    turns = by_scene[scene]
                    shuffled = [turns[j] for j in torch.randperm(len(turns), generator=generator).tolist()]
                    conversations.append([(t.question, t.answer) for t in shuffled[: recipe.max_turns]])
                lr = lr_at(i, stage.steps, stage.lr, stage.warmup_fraction, recipe.min_lr_fraction)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss = _step(model, tokenizer, scenes, conversations, features, pixels, optimizer, recipe.clip_grad)
                result.history.append({"step": step0 + i, "stage": stage.name, "loss": loss, "lr": lr})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(stage=stage.name, loss=f"{loss:.3f}")
            step0 += stage.steps
    finally:
        if bar is not None:
            bar.close()
        set_trainable(model, PARTS)
        model.eval()
    result.seconds = time.perf_counter() - start
    return result


def _step(model, tokenizer, scenes, conversations, features, pixels, optimizer, clip_grad: float) -> float:
    enc = encode_conversations(tokenizer, conversations)
    index = torch.tensor(scenes)
    if features is not None:
        out = model(enc["input_ids"], attention_mask=enc["attention_mask"], labels=enc["labels"],
                    vision_features=features[index])
    else:
        out = model(enc["input_ids"], pixels[index], enc["attention_mask"], enc["labels"])
    if not torch.isfinite(out.loss):
        raise FloatingPointError(f"the loss became {out.loss.item()}; lower the learning rate")
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], clip_grad)
    optimizer.step()
    return float(out.loss.detach())


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def answer_questions(model: PrismaticVLM, tokenizer, images: np.ndarray, questions: list[str], *,
                     batch_size: int = 64, max_new_tokens: int = 40,
                     features: torch.Tensor | None = None) -> list[str]:
    """Greedy answers (strings) to ``questions[i]`` about ``images[i]`` (uint8 (N, H, W, 3)).

    Introduced in lesson 05. ``features`` may pass the backbone's cached features of ``images``.
    """
    if isinstance(questions, str) or len(questions) != len(images if features is None else features):
        raise ValueError("need one question per image (a list of strings)")
    answers = []
    for i in range(0, len(questions), batch_size):
        enc = encode_prompts(tokenizer, questions[i:i + batch_size])
        if features is not None:
            new = model.generate(enc["input_ids"], attention_mask=enc["attention_mask"],
                                 vision_features=features[i:i + batch_size], max_new_tokens=max_new_tokens)
        else:
            pixels = model.preprocess(images[i:i + batch_size])
            new = model.generate(enc["input_ids"], pixels, enc["attention_mask"], max_new_tokens=max_new_tokens)
        answers += decode_answers(tokenizer, new)
    return answers


def vqa_accuracy(model: PrismaticVLM, tokenizer, data: VQAData, *, blank: bool = False, batch_size: int = 64,
                 kinds: tuple[str, ...] = KINDS, features: torch.Tensor | None = None) -> dict[str, float]:
    """Exact-match accuracy per question kind (and ``"all"`` over the kinds asked) on ``data``.

    Introduced in lesson 05. ``blank=True`` shows the model a uniform grey image instead of the
    scene: what the language model guesses without seeing. ``features``: cached backbone
    features of ``data.images`` (ignored with ``blank``).
    """
    samples = [s for s in data.samples if s.kind in kinds]
    if not samples:
        raise ValueError(f"no samples of kinds {kinds} in the data")
    scenes = [s.scene for s in samples]
    images = blank_images(len(samples), data.images.shape[1]) if blank else data.images[scenes]
    feats = features[torch.tensor(scenes)] if (features is not None and not blank) else None
    predicted = answer_questions(model, tokenizer, images, [s.question for s in samples],
                                 batch_size=batch_size, features=feats)
    hits, totals = {}, {}
    for s, p in zip(samples, predicted):
        totals[s.kind] = totals.get(s.kind, 0) + 1
        hits[s.kind] = hits.get(s.kind, 0) + int(p == s.answer)
    out = {k: hits[k] / totals[k] for k in KINDS if k in totals}
    out["all"] = sum(hits.values()) / len(samples)
    return out


def with_steps(recipe: VLMRecipe, scale: float) -> VLMRecipe:
    """The same recipe with every stage's steps multiplied by ``scale`` (at least 1 step each).

    Introduced in lesson 05 (a lesson trains a short run to show the curve).
    """
    return replace(recipe, stages=tuple(replace(s, steps=max(1, int(round(s.steps * scale)))) for s in recipe.stages))


# ----------------------------------------------------------------------------- the tokenizer's corpus


def instruction_prompts(split: str = "train") -> list[str]:
    """OpenVLA prompts for every instruction of ``split``'s phrasings (all objects, targets, directions).

    Introduced in lesson 05. ``"In: What action should the robot take to pick up the red cube?\\nOut:"``
    -- the text lesson 06 will feed the model, so the tokenizer learns its words.
    """
    from vla_lessons.sim.config import COLOURS, SHAPES
    from vla_lessons.sim.scene import DIRECTIONS, RECEPTACLES
    from vla_lessons.sim.tasks import TaskSpec, instructions_for

    from .openvla import PROMPT_TEMPLATE as ACTION_PROMPT

    prompts = []
    for colour in COLOURS:
        for shape in SHAPES:
            tasks = [TaskSpec("pick", colour, shape)]
            tasks += [TaskSpec("place", colour, shape, target=t) for t in RECEPTACLES]
            tasks += [TaskSpec("push", colour, shape, direction=d) for d in DIRECTIONS]
            for task in tasks:
                prompts += [ACTION_PROMPT.format(instruction=i) for i in instructions_for(task, split)]
    return prompts


def tokenizer_corpus(data: VQAData) -> list[str]:
    """The tokenizer's training text: train-phrasing instruction prompts + ``data``'s prompts and answers.

    Introduced in lesson 05. Held-out phrasings are left out on purpose (they must still tokenize).
    """
    from .vlm import build_prompt

    return instruction_prompts("train") + [f"{build_prompt(s.question)} {s.answer}" for s in data.samples]


# ----------------------------------------------------------------------------- the course's artifact

#: Where the course's VLM is saved (safetensors + config + tokenizer + metrics.json).
VLM_DIR = env.DATA_DIR / "models" / "vlm"
#: Folders searched, in order, for lesson 04's trained encoders (``siglip/`` and ``dino/`` inside).
ENCODER_DIRS = (env.DATA_DIR / "models",)


def find_encoders(dirs=ENCODER_DIRS):
    """``(siglip_dir, dino_dir)`` of the first folder in ``dirs`` holding both, else ``None``.

    Introduced in lesson 05.
    """
    from pathlib import Path

    for root in dirs:
        siglip, dino = Path(root) / "siglip", Path(root) / "dino"
        if (siglip / "config.json").is_file() and (dino / "config.json").is_file():
            return siglip, dino
    return None


def build_course_vlm(out_dir=None, *, full: bool | None = None, seed: int = 0, threads: int = 1,
                     encoders="auto", image_size: int | None = None, progress: bool = True,
                     recipe: VLMRecipe | None = None, llama_overrides: dict | None = None,
                     visual_position: str = "none") -> dict:
    """Build the course's VLM from seeds: scenes, tokenizer, model, training, evaluation, save.

    Introduced in lesson 05 (``python -m vla_lessons.build vlm``).

    Steps: render the VQA scenes (train and held-out splits, sizes from :data:`COURSE_SIZES`),
    train the tokenizer on the train text, build the VLM with lesson 04's trained encoders
    (``encoders="auto"`` looks in :data:`ENCODER_DIRS`; ``None`` uses random towers), pretrain with
    :func:`default_recipe` (scenes rendered at ``image_size``, default 96 px as the robot data),
    measure held-out accuracy with the scenes, with blank images and the
    majority-answer baseline, time inference, and save everything to ``out_dir`` (default
    :data:`VLM_DIR`). Training runs on ``threads`` CPU threads (1: a busy shared machine makes 2
    threads several times *slower*). Returns the summary also written to ``metrics.json``.
    """
    import json
    from pathlib import Path

    from vla_lessons.vision.encoders import load_dino, load_siglip

    from .text_tokenizer import reserved_ids, train_text_tokenizer
    from .vlm import build_vlm, load_vlm, parameter_counts, save_vlm, time_inference
    from .vqa import IMAGE_SIZE, blind_accuracy, vqa_dataset

    full = env.full_mode() if full is None else full
    out_dir = Path(out_dir) if out_dir is not None else VLM_DIR
    n_train, n_heldout, _ = COURSE_SIZES["full" if full else "fast"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    env.seed_everything(seed)
    t0 = time.perf_counter()
    try:
        image_size = image_size or IMAGE_SIZE
        train = vqa_dataset(n_train, "train", image_size=image_size, progress=progress)
        heldout = vqa_dataset(n_heldout, "heldout", image_size=image_size, progress=progress)
        t_data = time.perf_counter() - t0
        tokenizer = train_text_tokenizer(tokenizer_corpus(train))
        found = find_encoders() if encoders == "auto" else encoders
        towers = {}
        if found is not None:
            towers = {"siglip": load_siglip(found[0])[0], "dino": load_dino(found[1])}
        model = build_vlm(tokenizer, seed=seed, visual_position=visual_position, **towers,
                          **(llama_overrides or {}))
        recipe = recipe or default_recipe(full, seed=seed)
        result = train_vlm(model, tokenizer, train, recipe, progress=progress)
        t_eval = time.perf_counter()
        features = cache_image_features(model, heldout.images)
        accuracy = {
            "vlm": vqa_accuracy(model, tokenizer, heldout, features=features),
            "vlm_blank_image": vqa_accuracy(model, tokenizer, heldout, blank=True),
            "majority_answer": blind_accuracy(train, heldout),
        }
        t_eval = time.perf_counter() - t_eval
        save_vlm(model, tokenizer, out_dir)
        reload_error = _reload_error(model, load_vlm(out_dir)[0], tokenizer, heldout)
    finally:
        torch.set_num_threads(before)
    losses = result.losses()
    summary = {
        "name": "vlm", "path": str(out_dir), "full": bool(full), "seed": seed, "threads": threads,
        "encoders": [str(p) for p in found] if found is not None else "random",
        "scenes": {"train": n_train, "heldout": n_heldout, "image_size": image_size}, "samples": {"train": len(train), "heldout": len(heldout)},
        "vocab_size": len(tokenizer), "reserved_ids": [reserved_ids(tokenizer).start, reserved_ids(tokenizer).stop - 1],
        "params": parameter_counts(model),
        "recipe": {"stages": [vars(s) for s in recipe.stages], "batch_size": recipe.batch_size},
        "loss_first_50": float(losses[:50].mean()), "loss_last_50": float(losses[-50:].mean()),
        "loss_every_25": [round(float(v), 4) for v in losses[::25]],
        "accuracy": accuracy,
        "heldout_questions": heldout.kind_counts(),
        "reload_max_abs_logit_error": reload_error,
        "timing_ms_1_thread": time_inference(model, tokenizer),
        "seconds": {"data": t_data, "features": result.feature_seconds,
                    "train": result.seconds - result.feature_seconds, "eval": t_eval,
                    "total": time.perf_counter() - t0},
        "bytes": sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    summary["bytes"] = sum(p.stat().st_size for p in out_dir.iterdir() if p.is_file())
    return summary


@torch.no_grad()
def _reload_error(model, reloaded, tokenizer, data: VQAData, n: int = 16) -> float:
    """Largest |logit difference| between the trained model and its float16-stored copy."""
    samples = data.samples[:n]
    enc = encode_prompts(tokenizer, [s.question for s in samples])
    pixels = model.preprocess(data.images[[s.scene for s in samples]])
    a = model(enc["input_ids"], pixels, enc["attention_mask"]).logits
    b = reloaded(enc["input_ids"], pixels, enc["attention_mask"]).logits
    return float((a - b).abs().max())
