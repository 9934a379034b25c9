"""Fine-tuning a VLA on robot steps (optionally co-fine-tuned with VQA), as OpenVLA's script does.

Introduced in lesson 06.

One training example is one robot step: the scene image, the instruction and the expert's
7-number action, turned into 7 action ids by the model's :class:`ActionTokenizer`. The loss is the
cross-entropy on those 7 ids only (:func:`~vla_lessons.model.vla.encode_action_examples` puts
``-100`` everywhere else). Logged every ``log_every`` steps, like openvla's ``finetune.py``:

* ``loss`` -- the cross-entropy on the action tokens;
* ``action_accuracy`` -- the fraction of the 7 ids predicted exactly (argmax, teacher-forced);
* ``l1`` -- mean |decoded - true| action in *normalised* units ([-1, 1]).

**Co-fine-tuning** (RT-2): ``vqa_ratio`` > 0 gives that fraction of every batch to the VLM's
caption/VQA conversations, so the model keeps answering questions while it learns to act.

Images get a random shift of up to ``shift`` pixels (replicate-padded crop, DrQ-style), the one
augmentation that helps a small policy trained from pixels: OpenVLA's random crop plays the same
role. Everything is seeded: same seed, same data, same steps -> the same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class ActionFrames:
    """Robot steps as flat arrays: what a VLA trains on.

    Introduced in lesson 06.

    Attributes:
        images: uint8 (N, H, W, 3), the scene camera.
        instructions: N strings.
        actions: float32 (N, 7), the expert's actions.
        episodes: int64 (N,), the episode each step comes from.
        families: N task family names.
        states: float32 (N, 8), the robot state at each step (``observation.state``), or None.
        wrist_images: uint8 (N, H, W, 3), the wrist camera, or None.
        grounding: float32 (N, G), where the episode's task object and receptacle started (metres,
            :func:`~vla_lessons.model.grounding.episode_grounding`), or None: what a grounding VLA is taught.
    """

    images: np.ndarray
    instructions: list
    actions: np.ndarray
    episodes: np.ndarray
    families: list
    states: np.ndarray | None = None
    wrist_images: np.ndarray | None = None
    grounding: np.ndarray | None = None

    def __post_init__(self):
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[-1] != 3 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {self.images.dtype} {self.images.shape}")
        if self.actions.shape != (n, 7) or not np.isfinite(self.actions).all():
            raise ValueError(f"actions must be finite (N, 7) = ({n}, 7), got {self.actions.shape}")
        if len(self.instructions) != n or len(self.episodes) != n or len(self.families) != n:
            raise ValueError("images, instructions, actions, episodes and families must have the same length")
        if self.states is not None and (self.states.ndim != 2 or len(self.states) != n
                                        or not np.isfinite(self.states).all()):
            raise ValueError(f"states must be finite (N, P) with N = {n}, got {self.states.shape}")
        if self.wrist_images is not None and (self.wrist_images.shape != self.images.shape
                                              or self.wrist_images.dtype != np.uint8):
            raise ValueError(f"wrist_images must be uint8 of the images' shape {self.images.shape}, "
                             f"got {self.wrist_images.dtype} {self.wrist_images.shape}")
        if self.grounding is not None and (self.grounding.ndim != 2 or len(self.grounding) != n
                                           or not np.isfinite(self.grounding).all()):
            raise ValueError(f"grounding must be finite (N, G) with N = {n}, got {self.grounding.shape}")

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index) -> "ActionFrames":
        """The steps at ``index`` (an int array or a boolean mask)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index)
        return ActionFrames(self.images[index], [self.instructions[i] for i in index], self.actions[index],
                            self.episodes[index], [self.families[i] for i in index],
                            None if self.states is None else self.states[index],
                            None if self.wrist_images is None else self.wrist_images[index],
                            None if self.grounding is None else self.grounding[index])


def load_action_frames(root, episodes=None, *, wrist: bool = True) -> ActionFrames:
    """Every step of a LeRobot-style dataset (lesson 01) as :class:`ActionFrames`.

    Introduced in lesson 06. ``episodes``: episode indices to keep (None = all); ``wrist=False``
    leaves the wrist camera's images out (half the memory, for a scene-camera VLA).
    """
    from vla_lessons.data import read_episodes

    eps = read_episodes(Path(root), episodes)
    if not eps:
        raise ValueError(f"no episodes in {root}")
    lengths = [len(e.actions) for e in eps]
    return ActionFrames(
        images=np.concatenate([e.images for e in eps]),
        instructions=[e.instruction for e, n in zip(eps, lengths) for _ in range(n)],
        actions=np.concatenate([e.actions for e in eps]).astype(np.float32),
        episodes=np.repeat(np.arange(len(eps)), lengths),
        families=[e.family for e, n in zip(eps, lengths) for _ in range(n)],
        states=np.concatenate([e.states for e in eps]).astype(np.float32),
        wrist_images=np.concatenate([e.wrist_images for e in eps]) if wrist else None)


def random_shift(images: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each uint8 image (B, H, W, 3) by up to ``shift`` pixels (edges replicated). Same shape."""
    if shift <= 0:
        return images
    b, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="edge")
    dy, dx = rng.integers(0, 2 * shift + 1, size=(2, b))
    return np.stack([padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(b)])


@dataclass(frozen=True)
class FinetuneConfig:
    """How a VLA is fine-tuned. Introduced in lesson 06.

    ``vqa_ratio``: the fraction of each batch that is VQA conversations (co-fine-tuning; 0 = none).
    ``vision_lr_scale``: the vision backbone's and the projector's learning rate relative to
    ``lr`` (1 = one rate for all, OpenVLA's recipe).
    ``label_sigma``: Gaussian soft targets over neighbouring bins, in bins (0 = one-hot, OpenVLA's).
    ``loc_batch``: "where is the X?" questions added to each step (0 = none), their loss weighted
    by ``loc_weight`` (:mod:`~vla_lessons.train.localise`; needs ``where=`` and ``loc_head=``).
    ``ground_batch``: for a grounding VLA, steps from episodes' first
    :data:`~vla_lessons.model.grounding.GROUND_STEPS` added to each batch (they teach the grounding
    head; every step teaches the actions); ``ground_weight`` weights the grounding's L1 loss;
    ``ground_noise``: the standard deviation (metres) of the noise added to the true grounding
    the where token reads in training, so that the actions tolerate a grounding a little off.
    """

    steps: int
    batch_size: int = 32
    lr: float = 3e-4
    warmup_fraction: float = 0.05
    weight_decay: float = 0.0
    shift: int = 4
    vqa_ratio: float = 0.0
    log_every: int = 10
    seed: int = 0
    vision_lr_scale: float = 1.0
    label_sigma: float = 0.0
    loc_batch: int = 0
    loc_weight: float = 1.0
    ground_batch: int = 0
    ground_weight: float = 1.0
    ground_noise: float = 0.01

    def __post_init__(self):
        if isinstance(self.loc_batch, bool) or not isinstance(self.loc_batch, int) or self.loc_batch < 0:
            raise ValueError(f"loc_batch must be an int >= 0 (questions per step), got {self.loc_batch!r}")
        if isinstance(self.ground_batch, bool) or not isinstance(self.ground_batch, int) or self.ground_batch < 0:
            raise ValueError(f"ground_batch must be an int >= 0 (steps per batch), got {self.ground_batch!r}")
        for name in ("ground_weight", "ground_noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        if not (math.isfinite(self.loc_weight) and self.loc_weight >= 0):
            raise ValueError(f"loc_weight must be a number >= 0, got {self.loc_weight!r}")
        if not (math.isfinite(self.label_sigma) and self.label_sigma >= 0):
            raise ValueError(f"label_sigma must be a number >= 0 (bins), got {self.label_sigma!r}")
        if not (math.isfinite(self.vision_lr_scale) and self.vision_lr_scale >= 0):
            raise ValueError(f"vision_lr_scale must be a number >= 0, got {self.vision_lr_scale!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a positive int, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {self.batch_size!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.vqa_ratio < 1.0:
            raise ValueError(f"vqa_ratio must be in [0, 1), got {self.vqa_ratio!r}")
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {self.shift}")


@dataclass
class FinetuneResult:
    """What :func:`finetune_vla` returns. Introduced in lesson 06.

    ``history``: one dict per logged step (``step``, ``loss``, ``action_accuracy``, ``l1``, ``lr``,
    and ``vqa_loss`` when co-fine-tuning); ``seconds``: wall time; ``trainable``: parameters trained.
    """

    history: list = field(default_factory=list)
    seconds: float = 0.0
    trainable: int = 0

    def column(self, key: str) -> np.ndarray:
        """One logged metric over the logged steps, float64."""
        return np.array([h[key] for h in self.history], dtype=np.float64)


def lr_at(step: int, steps: int, lr: float, warmup_fraction: float) -> float:
    """Linear warmup then cosine decay to 0 (step counts from 0)."""
    warm = max(1, int(warmup_fraction * steps))
    if step < warm:
        return lr * (step + 1) / warm
    return 0.5 * lr * (1 + math.cos(math.pi * (step - warm) / max(1, steps - warm)))


def action_metrics(model, logits: torch.Tensor, target_ids: torch.Tensor) -> dict[str, float]:
    """Teacher-forced metrics from the logits that predict the 7 action ids.

    Introduced in lesson 06. ``logits`` (B, 7, V), ``target_ids`` (B, 7). ``l1`` compares the
    decoded bin values in normalised units (a non-action argmax is clipped into range for the
    metric only, as openvla's script does). For the continuous head (``logits`` and
    ``target_ids`` are then normalised actions (B, K, 7)) there is no accuracy, only ``l1``.
    """
    if getattr(model.config, "action_head", "tokens") == "l1":
        return {"l1": float((logits.clamp(-1, 1) - target_ids).abs().mean())}
    pred = logits.argmax(-1)
    tok = model.action_tokenizer
    pred_values = tok.decode_normalized(pred.numpy(), clip=True)
    true_values = tok.decode_normalized(target_ids.numpy())
    return {"action_accuracy": float((pred == target_ids).float().mean()),
            "l1": float(np.abs(pred_values - true_values).mean())}


def action_loss(model, frames: ActionFrames, index: np.ndarray, *, unnorm_key: str | None = None,
                shift: int = 0, rng: np.random.Generator | None = None, label_sigma: float = 0.0,
                ground_noise: float = 0.0, ground_weight: float = 1.0, extras: dict | None = None):
    """``(loss, logits (B, 7 K, V), target ids (B, 7 K))`` for the steps at ``index``.

    Introduced in lesson 06. K is the model's ``chunk_size`` (1 unless it predicts action chunks:
    then the targets are the step's action and the next K - 1 of its episode, :func:`chunk_indices`).
    A VLA with OpenVLA-OFT's continuous head (``config.action_head == "l1"``) gives instead
    ``(L1 loss, predicted (B, K, 7), targets (B, K, 7))``, both in normalised units. The loss is the cross-entropy of the 7 action ids -- the same number
    ``model(..., labels=...)`` computes with the label mask, but only the last 8 positions' logits
    are computed. ``label_sigma > 0`` spreads each target over its neighbouring bins with a
    Gaussian of that width in bins (:func:`gaussian_bin_targets`), so a near miss costs less than a
    far one.

    A grounding VLA (``config.grounding_dim > 0``) reads ``frames.grounding`` in its where token
    (plus Gaussian noise of ``ground_noise`` metres) and answers it from its grounding query in the
    same pass; the L1 of that answer on the steps among ``index`` from an episode's first
    :data:`~vla_lessons.model.grounding.GROUND_STEPS` joins the loss, weighted by ``ground_weight``.
    ``extras`` (a dict), when given, receives ``action_loss`` (the L1 of the actions alone) and, for
    those steps, ``ground_l1`` and ``ground_cm`` (the median distance of the answered object position
    from the truth). An episode's first steps are counted from the first of its steps in ``frames``:
    pass whole episodes.
    """
    from vla_lessons.model.vla import encode_action_examples

    images = frames.images[index]
    if shift:
        images = random_shift(images, shift, rng if rng is not None else np.random.default_rng(0))
    chunk = getattr(model.config, "chunk_size", 1)
    actions = frames.actions[chunk_indices(frames.episodes, index, chunk)] if chunk > 1 else frames.actions[index]
    l1_head = getattr(model.config, "action_head", "tokens") == "l1"
    if l1_head and label_sigma > 0:
        raise ValueError("label_sigma spreads targets over bins; a VLA with the continuous (L1) head has none")
    if l1_head:
        from vla_lessons.model.vla import encode_action_prompts

        targets = torch.as_tensor(model.action_tokenizer.normalizer(unnorm_key).normalize(actions),
                                  dtype=torch.float32).reshape(len(index), chunk, -1)
        enc = encode_action_prompts(model.tokenizer, [frames.instructions[i] for i in index])
    else:  # the next `chunk` actions of each step, 7 * chunk ids in a row
        targets = model.action_tokenizer.encode(actions, unnorm_key).reshape(len(index), -1)
        enc = encode_action_examples(model.tokenizer, [frames.instructions[i] for i in index], targets)
    extra = {}
    if getattr(model.config, "proprio_dim", 0):
        if frames.states is None:
            raise ValueError("this VLA reads the robot state, but the frames have no states")
        extra["proprio"] = model.normalize_proprio(frames.states[index], unnorm_key)
    if getattr(model.config, "num_images", 1) == 2:
        if frames.wrist_images is None:
            raise ValueError("this VLA reads the wrist camera, but the frames have no wrist_images "
                             "(load them with load_action_frames(root, wrist=True))")
        wrist = frames.wrist_images[index]
        if shift:
            wrist = random_shift(wrist, shift, rng if rng is not None else np.random.default_rng(1))
        extra["wrist_pixel_values"] = model.preprocess(wrist)
    if l1_head and getattr(model.config, "grounding_dim", 0):  # say where (teacher-forced), then act
        return _grounded_loss(model, frames, index, images, enc, extra, targets, unnorm_key, rng,
                              ground_noise, ground_weight, extras)
    if l1_head:  # OpenVLA-OFT: the whole chunk in one pass, L1 against the normalised actions
        predicted = model.normalized_action_chunks(enc["input_ids"], model.preprocess(images), enc["attention_mask"],
                                                   proprio=extra.get("proprio"),
                                                   wrist_pixel_values=extra.get("wrist_pixel_values"))
        return F.l1_loss(predicted, targets), predicted.detach(), targets
    dim = targets.shape[1]
    out = model(enc["input_ids"], model.preprocess(images), enc["attention_mask"], logits_to_keep=dim + 1,
                **extra)
    logits = out.logits[:, :-1]  # position t predicts token t + 1: the last dim+1 positions predict the actions
    target_ids = enc["input_ids"][:, -dim:]
    if label_sigma > 0:
        soft = gaussian_bin_targets(target_ids, logits.shape[-1], model.config.n_action_bins, label_sigma)
        loss = -(soft * F.log_softmax(logits, dim=-1)).sum(-1).mean()
    else:
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_ids.reshape(-1))
    return loss, logits.detach(), target_ids


def _grounded_loss(model, frames, index, images, enc, extra, targets, unnorm_key, rng, noise, weight, extras):
    """:func:`action_loss` for a grounding VLA: the where token reads the (noisy) truth, the query answers it."""
    from vla_lessons.model.grounding import GROUND_STEPS

    if frames.grounding is None:
        raise ValueError("this VLA grounds, but the frames have no grounding (set ActionFrames.grounding from "
                         "vla_lessons.model.grounding.episode_grounding)")
    truth = frames.grounding[index].astype(np.float64)
    fed = truth
    if noise > 0:  # every number, the (0, 0) of a missing receptacle too (the instruction says there is none)
        fed = truth + (rng if rng is not None else np.random.default_rng(0)).normal(0.0, noise, truth.shape)
    predicted, grounding = model.normalized_action_chunks(
        enc["input_ids"], model.preprocess(images), enc["attention_mask"], proprio=extra.get("proprio"),
        wrist_pixel_values=extra.get("wrist_pixel_values"), grounding=model.normalize_grounding(fed, unnorm_key),
        return_grounding=True)
    loss = F.l1_loss(predicted, targets)
    if extras is not None:
        extras["action_loss"] = float(loss.detach())
    early = torch.as_tensor(step_in_episode(frames.episodes)[index] < GROUND_STEPS)
    if bool(early.any()):
        answer = grounding[early]
        ground_l1 = F.l1_loss(answer, model.normalize_grounding(truth[early.numpy()], unnorm_key))
        loss = loss + weight * ground_l1
        if extras is not None:
            metres = model.unnormalize_grounding(answer.detach().double().numpy(), unnorm_key)
            miss = np.linalg.norm(metres[:, :2] - truth[early.numpy(), :2], axis=1)
            extras.update(ground_l1=float(ground_l1.detach()), ground_cm=float(np.median(miss) * 100))
    return loss, predicted.detach(), targets


def chunk_indices(episodes, index, size: int) -> np.ndarray:
    """For each step at ``index``, the indices of it and its next ``size - 1`` steps: int64 (B, size).

    Introduced in lesson 06 (action chunks). ``episodes`` (N,) keeps each episode's steps together
    and in order (:func:`load_action_frames`); past an episode's last step the last step repeats
    (the robot holds its final action, as OpenVLA-OFT pads its chunks).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    episodes = np.asarray(episodes)
    index = np.asarray(index, dtype=np.int64)
    if index.ndim != 1 or (len(index) and (index.min() < 0 or index.max() >= len(episodes))):
        raise ValueError(f"index must be 1-D step indices in [0, {len(episodes) - 1}]")
    step_in_episode(episodes)  # raises unless each episode's steps are contiguous
    last = np.r_[episodes[1:] != episodes[:-1], True]  # the last step of each episode
    end = np.minimum.accumulate(np.where(last, np.arange(len(episodes)), len(episodes))[::-1])[::-1]
    return np.minimum(index[:, None] + np.arange(size)[None], end[index][:, None])


def gaussian_bin_targets(target_ids: torch.Tensor, vocab_size: int, n_bins: int, sigma: float) -> torch.Tensor:
    """Soft targets (..., V): a Gaussian of ``sigma`` bins around each target id, on the action block only.

    Introduced in lesson 06. The action ids are the last ``n_bins`` of the vocabulary and
    neighbouring ids are neighbouring bins, so the one-hot target of plain cross-entropy becomes
    ``exp(-(j - t)^2 / (2 sigma^2))`` over the block, normalised to sum to 1 ("HL-Gauss",
    Farebrother et al. 2024, who found classification with such targets trains regressors
    faster than either one-hot classification or MSE). The argmax stays on the target.
    """
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 bins, got {sigma!r}")
    low = vocab_size - n_bins
    if bool((target_ids < low).any()) or bool((target_ids >= vocab_size).any()):
        raise ValueError(f"target ids must be action ids in [{low}, {vocab_size - 1}]")
    ids = torch.arange(low, vocab_size, dtype=torch.float32)
    weights = torch.exp(-((ids - target_ids[..., None].float()) ** 2) / (2 * sigma ** 2))
    soft = torch.zeros(*target_ids.shape, vocab_size)
    soft[..., low:] = weights / weights.sum(-1, keepdim=True)
    return soft


def _vqa_loss(model, vqa, index: np.ndarray) -> torch.Tensor:
    from vla_lessons.model.vlm import encode_conversations

    samples = [vqa.samples[i] for i in index]
    enc = encode_conversations(model.tokenizer, [[(s.question, s.answer)] for s in samples])
    pixels = model.preprocess(vqa.images[[s.scene for s in samples]])
    return model(enc["input_ids"], pixels, enc["attention_mask"], enc["labels"]).loss


def finetune_vla(model, frames: ActionFrames, config: FinetuneConfig, *, unnorm_key: str | None = None,
                 vqa=None, parameters=None, progress: bool = True, threads: int | None = 1,
                 callback=None, callback_every: int = 0, where=None, loc_head=None) -> FinetuneResult:
    """Fine-tune ``model`` (a :class:`~vla_lessons.model.vla.PrismaticVLA`) in place on ``frames``.

    Introduced in lesson 06.

    Args:
        frames: the robot steps (:func:`load_action_frames`).
        config: steps, batch size, learning rate, augmentation, co-fine-tuning ratio, seed.
        unnorm_key: which of the model's statistics encode the actions (None when there is one).
        vqa: a :class:`~vla_lessons.model.vqa.VQAData` to co-fine-tune with (needs ``config.vqa_ratio``).
        parameters: the parameters to train (default: every parameter with ``requires_grad``);
            lesson 07's strategies pass their own.
        progress: print a line every 10% of the steps (stdout; keep out of compared cells).
        threads: torch threads while training (1 is fastest on a busy 2-core machine).
        callback, callback_every: ``callback(step, model)`` every ``callback_every`` steps
            (the build saves checkpoints with it).
        where, loc_head: a :class:`~vla_lessons.train.localise.WhereData` and the
            :class:`~vla_lessons.train.localise.LocalisationHead` trained along (``config.loc_batch``).
    """
    if config.vqa_ratio > 0 and vqa is None:
        raise ValueError("config.vqa_ratio > 0 needs vqa data (a VQAData)")
    if config.loc_batch and (where is None or loc_head is None):
        raise ValueError("config.loc_batch > 0 needs where= (a WhereData) and loc_head= (a LocalisationHead)")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    early = None
    if config.ground_batch:
        from vla_lessons.model.grounding import GROUND_STEPS

        if not getattr(model.config, "grounding_dim", 0):
            raise ValueError("config.ground_batch > 0 needs a grounding VLA (add_grounding)")
        early = np.flatnonzero(step_in_episode(frames.episodes) < GROUND_STEPS)
    params = [p for p in (parameters if parameters is not None else model.parameters()) if p.requires_grad]
    if not params:
        raise ValueError("nothing to train: no parameter requires grad")
    vision = {id(p) for part in ("vision_backbone", "projector") if hasattr(model, part)
              for p in getattr(model, part).parameters()}
    groups = [{"params": [p for p in params if id(p) not in vision], "scale": 1.0},
              {"params": [p for p in params if id(p) in vision], "scale": config.vision_lr_scale}]
    clipped = params
    if config.loc_batch:
        groups.append({"params": list(loc_head.parameters()), "scale": 1.0})
        clipped = params + groups[-1]["params"]
        loc_head.train()
    optimizer = torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                                  weight_decay=config.weight_decay)
    n_vqa = int(round(config.batch_size * config.vqa_ratio)) if vqa is not None else 0
    n_act = config.batch_size - n_vqa
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    model.train()
    result = FinetuneResult(trainable=sum(p.numel() for p in params))
    start = time.perf_counter()
    window = []
    try:
        for step in range(config.steps):
            lr = lr_at(step, config.steps, config.lr, config.warmup_fraction)
            for group in optimizer.param_groups:
                group["lr"] = lr * group["scale"]
            index = rng.integers(0, len(frames), n_act)
            if early is not None:
                index = np.concatenate([index, rng.choice(early, config.ground_batch)])
            extras = {}
            loss, logits, targets = action_loss(model, frames, index, unnorm_key=unnorm_key,
                                                shift=config.shift, rng=rng, label_sigma=config.label_sigma,
                                                ground_noise=config.ground_noise, ground_weight=config.ground_weight,
                                                extras=extras)
            total = loss
            vqa_loss = None
            if n_vqa:
                vqa_loss = _vqa_loss(model, vqa, rng.integers(0, len(vqa.samples), n_vqa))
                total = (n_act * loss + n_vqa * vqa_loss) / config.batch_size
            loc_loss = None
            if config.loc_batch:
                from vla_lessons.train.localise import localisation_loss

                loc_loss = localisation_loss(model, loc_head, where, rng.integers(0, len(where), config.loc_batch))
                total = total + config.loc_weight * loc_loss
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(clipped, 1.0)
            optimizer.step()
            row = {"loss": float(loss.detach()), **action_metrics(model, logits, targets)}
            if callback is not None and callback_every and (step + 1) % callback_every == 0:
                model.eval()
                callback(step + 1, model)
                model.train()
            if vqa_loss is not None:
                row["vqa_loss"] = float(vqa_loss.detach())
            if loc_loss is not None:
                row["loc_loss"] = float(loc_loss.detach())
            row.update(extras)
            window.append(row)
            if (step + 1) % config.log_every == 0 or step == config.steps - 1:
                keys = dict.fromkeys(k for w in window for k in w)  # in order; ground_* only on some steps
                mean = {k: float(np.mean([w[k] for w in window if k in w])) for k in keys}
                result.history.append({"step": step + 1, "lr": lr, **mean})
                window = []
                if progress and ((step + 1) % max(1, config.steps // 10) < config.log_every
                                 or step == config.steps - 1):
                    acc = f"acc {mean['action_accuracy']:.3f}  " if "action_accuracy" in mean else ""
                    acc += f"where {mean['ground_cm']:.1f} cm  " if "ground_cm" in mean else ""
                    print(f"  step {step + 1}/{config.steps}  loss {mean['loss']:.3f}  {acc}l1 {mean['l1']:.4f}  "
                          f"({time.perf_counter() - start:.0f} s)", flush=True)
    finally:
        torch.set_num_threads(before)
        model.eval()
        if loc_head is not None:
            loc_head.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def evaluate_actions(model, frames: ActionFrames, *, unnorm_key: str | None = None,
                     batch_size: int = 64) -> dict[str, float]:
    """Teacher-forced ``loss``, ``action_accuracy`` and ``l1`` over all of ``frames`` (no augmentation).

    Introduced in lesson 06. With the continuous head (``action_head == "l1"``): ``loss`` (L1) and ``l1``.
    A grounding VLA acts on the true grounding here (``loss`` is the actions' L1 alone), and
    ``ground_cm`` is the median distance of its own answer (object position) from the truth on the
    episodes' first steps (``frames`` must hold whole episodes).
    """
    model.eval()
    sums, n = {}, 0
    for k in range(0, len(frames), batch_size):
        index = np.arange(k, min(k + batch_size, len(frames)))
        extras = {}
        loss, logits, targets = action_loss(model, frames, index, unnorm_key=unnorm_key, extras=extras)
        row = {"loss": extras.get("action_loss", float(loss)), **action_metrics(model, logits, targets)}
        for key, value in row.items():
            sums[key] = sums.get(key, 0.0) + value * len(index)
        n += len(index)
    out = {k: v / n for k, v in sums.items()}
    if getattr(model.config, "grounding_dim", 0):
        from vla_lessons.model.grounding import GROUND_STEPS

        early = np.flatnonzero(step_in_episode(frames.episodes) < GROUND_STEPS)
        misses = []
        for k in range(0, len(early), batch_size):
            index = early[k:k + batch_size]
            wrist = frames.wrist_images[index] if model.config.num_images == 2 else None
            states = frames.states[index] if model.config.proprio_dim else None
            metres = model.predict_grounding(frames.images[index], [frames.instructions[i] for i in index],
                                             unnorm_key, proprio=states, wrist_images=wrist)
            misses.append(np.linalg.norm(metres[:, :2] - frames.grounding[index, :2], axis=1))
        out["ground_cm"] = float(np.median(np.concatenate(misses)) * 100)
    return out


def step_in_episode(episodes) -> np.ndarray:
    """The index of each step within its episode (0 at an episode's first step): int64 (N,).

    Introduced in lesson 06. ``episodes`` (N,) must keep each episode's steps together and in order
    (as :func:`load_action_frames` does).
    """
    episodes = np.asarray(episodes)
    if episodes.ndim != 1 or not len(episodes):
        raise ValueError(f"episodes must be a non-empty 1-D array, got shape {episodes.shape}")
    starts = np.r_[True, episodes[1:] != episodes[:-1]]
    if len(np.unique(episodes[starts])) != int(starts.sum()):
        raise ValueError("each episode's steps must be contiguous")
    first = np.maximum.accumulate(np.where(starts, np.arange(len(episodes)), 0))
    return np.arange(len(episodes)) - first


def heading_by_step(predicted, frames: ActionFrames, max_step: int = 6) -> list[dict]:
    """Do the predicted moves point where the expert's do? One row per step index in the episode.

    Introduced in lesson 06. ``predicted``: float (N, 7) actions for the N steps of ``frames``
    (teacher-forced: each from the expert's own observation). For each ``t < max_step``: ``n`` steps,
    ``cosine``, the median cosine between predicted and expert table-plane moves (dx, dy) (1: same
    direction, 0: at right angles), ``error_cm``, the mean |predicted - expert| (dx, dy) distance, and
    ``move_cm``, the mean length of the expert's own (dx, dy), both in cm.
    """
    if isinstance(max_step, bool) or not isinstance(max_step, int) or max_step < 1:
        raise ValueError(f"max_step must be a positive int, got {max_step!r}")
    predicted = np.asarray(predicted, dtype=np.float64)
    if predicted.shape != frames.actions.shape:
        raise ValueError(f"predicted must be (N, 7) = {frames.actions.shape} like frames.actions, got {predicted.shape}")
    if not np.isfinite(predicted).all():
        raise ValueError("predicted contains NaN or inf")
    t = step_in_episode(frames.episodes)
    p, e = predicted[:, :2], frames.actions[:, :2].astype(np.float64)
    rows = []
    for step in range(max_step):
        w = t == step
        if not w.any():
            break
        norms = np.linalg.norm(p[w], axis=1) * np.linalg.norm(e[w], axis=1)
        cos = (p[w] * e[w]).sum(1) / np.where(norms > 0, norms, 1.0)
        rows.append({"t": step, "n": int(w.sum()), "cosine": float(np.median(np.where(norms > 0, cos, 0.0))),
                     "error_cm": float(np.linalg.norm(p[w] - e[w], axis=1).mean() * 100),
                     "move_cm": float(np.linalg.norm(e[w], axis=1).mean() * 100)})
    return rows


def vla_policy(model, unnorm_key: str | None = None):
    """``policy(images, instructions) -> actions`` for :mod:`vla_lessons.deploy.evaluate`.

    Introduced in lesson 06. A VLA that reads the robot state gives a policy with
    ``needs_state = True`` (called with the raw ``states`` as a third argument); one that reads
    the wrist camera, ``needs_wrist = True`` (called with ``wrist_images=``); one that grounds,
    ``needs_grounding = True`` and ``policy.ground(images, instructions, states)`` -> (B, G) metres, which
    the rollout calls at reset and passes back as ``grounding=`` at every step. A VLA that predicts
    action chunks gives ``chunk_size = K`` and returns (B, K, 7): the rollout executes each chunk
    before it calls again.
    """
    model.eval()
    needs_state = bool(getattr(model.config, "proprio_dim", 0))
    needs_wrist = getattr(model.config, "num_images", 1) == 2
    chunk = getattr(model.config, "chunk_size", 1)

    grounds = bool(getattr(model.config, "grounding_dim", 0))

    def policy(images, instructions, states=None, *, wrist_images=None, grounding=None):
        if chunk > 1:
            return model.predict_action_chunks(images, list(instructions), unnorm_key, proprio=states,
                                               wrist_images=wrist_images, grounding=grounding)
        return model.predict_actions(images, list(instructions), unnorm_key, proprio=states,
                                     wrist_images=wrist_images, grounding=grounding)

    if grounds:  # the rollout grounds once per episode, from its first image, and passes grounding= after
        def ground(images, instructions, states=None, *, wrist_images=None):
            return model.predict_grounding(images, list(instructions), unnorm_key, proprio=states,
                                           wrist_images=wrist_images)

        policy.ground = ground
    policy.needs_grounding = grounds
    policy.needs_state = needs_state
    policy.needs_wrist = needs_wrist
    policy.chunk_size = chunk
    return policy


def true_grounding_policy(model, unnorm_key: str | None = None):
    """:func:`vla_policy` for a grounding VLA, handed the simulator's grounding at reset instead of its own.

    Introduced in lesson 06. It separates the two halves of a grounding VLA: with the truth in its
    where token, what is left is how well it acts. The rollout passes
    :func:`~vla_lessons.train.privileged.privileged_features` (``needs_privileged``), whose first
    :data:`~vla_lessons.model.grounding.GROUNDING_DIM` numbers are the truth.
    """
    from vla_lessons.model.grounding import GROUNDING_DIM

    if not getattr(model.config, "grounding_dim", 0):
        raise ValueError("true_grounding_policy needs a grounding VLA (add_grounding)")
    inner = vla_policy(model, unnorm_key)

    def policy(images, instructions, states=None, *, privileged=None, wrist_images=None):
        return inner(images, instructions, states, grounding=privileged[:, :GROUNDING_DIM], wrist_images=wrist_images)

    policy.chunk_size, policy.needs_state, policy.needs_wrist = inner.chunk_size, inner.needs_state, inner.needs_wrist
    policy.needs_privileged = True
    return policy
