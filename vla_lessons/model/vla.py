"""The mini VLA: the lesson-05 VLM whose last 256 vocabulary ids are robot actions.

Introduced in lesson 06.

OpenVLA turns a Prismatic VLM into a policy without adding a single layer. The action
tokenizer of lesson 02 (:class:`~vla_lessons.actions.bins.ActionTokenizer`, OpenVLA's layout)
maps each of the 7 action numbers to one of the 256 *least used* ids of the vocabulary -- the
block the course's text tokenizer keeps free (ids 768..1023) -- and the VLM is fine-tuned to
answer the prompt with those 7 ids::

    <s> [64 visual tokens] In: What action should the robot take to pick up the red cube?\\nOut: a1 a2 ... a7
    labels: -100 everywhere ...................................................................  a1 ... a7

At run time :meth:`PrismaticVLA.predict_action` decodes 7 ids greedily, turns them back into
bins and un-normalises them with the statistics of the dataset it was trained on, which travel
inside ``config.json`` (``norm_stats``, as openvla-7b's) and in ``dataset_statistics.json``
next to the weights (the file OpenVLA's fine-tuning script writes).

Two inputs that openvla-7b does not have come from OpenVLA-OFT, each switched on by the config
and each placed right after the scene camera's visual tokens: the **wrist camera**
(``num_images=2``: its image goes through the same backbone and projector, N more tokens) and the
**robot state** (``proprio_dim > 0``: one token from :class:`ProprioProjector`)::

    <s> [N scene tokens] [N wrist tokens] [state token] In: What action ... ?\\nOut: a1 ... a7

Two answers that openvla-7b does not give come from the same line of work, also switched on by the
config: **action chunks** (``chunk_size = K``: the next K actions, 7 K tokens, executed before the
robot asks again) and **OpenVLA-OFT's continuous head** (``action_head="l1"``,
:mod:`~vla_lessons.model.action_head`: K learned queries after the prompt, an MLP on their hidden
states, the whole chunk in one forward pass, trained with L1). With that head, **grounding**
(``grounding_dim = 4``, :mod:`~vla_lessons.model.grounding`) makes the VLA say where the task's
object and receptacle are before it acts: a grounding query and a where token sit between the
prompt and the action queries::

    <s> [N scene tokens] [state token] In: What action ... ?\nOut: [ground] [where] [q1] ... [qK]

Two departures from openvla-7b, both visible in the code: the label sits on the 7 action ids
only (OpenVLA also trains the ``</s>`` after them, which :meth:`predict_action` never reads), and
decoding is *restricted to the action block* by default (OpenVLA takes the argmax over the whole
vocabulary and silently clips a text id into the action range; see lesson 02).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch

from vla_lessons.actions.bins import ActionTokenizer

from .action_head import ACTION_HEADS, ActionQueries, L1RegressionHead
from .grounding import GroundingHead
from .vlm import IGNORE_INDEX, PrismaticVLM, PrismaticVLMConfig

#: OpenVLA's prompt (openvla-7b's ``predict_action`` builds exactly this string).
ACTION_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
#: Action dimensions (dx, dy, dz, droll, dpitch, dyaw, gripper).
ACTION_DIM = 7
#: File OpenVLA's fine-tuning script writes next to the weights.
STATS_FILE = "dataset_statistics.json"


class PrismaticVLAConfig(PrismaticVLMConfig):
    """:class:`PrismaticVLMConfig` plus what turns tokens into actions.

    Introduced in lesson 06.

    Attributes:
        norm_stats: ``{dataset_name: {"action": {"q01": [7], "q99": [7], ...}}}``, the statistics
            :meth:`PrismaticVLA.predict_action` un-normalises with (openvla-7b's ``norm_stats``).
        n_action_bins: bins per dimension (256), the size of the reserved id block.
        action_layout: ``"openvla"`` (255 centres, as the released model) or ``"centers256"``.
        action_dim: numbers per action (7).
        proprio_dim: 0 (OpenVLA: the image and the instruction only) or the length of the robot
            state read as one extra token after the visual tokens (OpenVLA-OFT's proprioception,
            :class:`ProprioProjector`); its statistics are ``norm_stats[name]["proprio"]``.
        num_images: 1 (the scene camera, OpenVLA) or 2 (scene + wrist camera, OpenVLA-OFT's
            ``num_images_in_input=2``). Both images go through the same vision backbone and
            projector; the wrist camera's tokens follow the scene camera's.
        chunk_size: actions per answer (1: OpenVLA, one action of 7 tokens). With ``K > 1`` the
            VLA answers with the next ``K`` actions, ``7 K`` tokens (action chunking, as ACT,
            pi0 and OpenVLA-OFT); the robot executes the chunk before it asks again.
        action_head: ``"tokens"`` (OpenVLA: the answer is action ids, decoded one at a time) or
            ``"l1"`` (OpenVLA-OFT: ``chunk_size`` learned queries after the prompt and an MLP on
            their last hidden states give the whole chunk in one forward pass, trained with L1;
            :mod:`~vla_lessons.model.action_head`).
        grounding_dim: 0, or the numbers the VLA answers about *where* before it acts (4: the task
            object's and receptacle's table positions, :mod:`~vla_lessons.model.grounding`); needs the
            ``"l1"`` head; its statistics are ``norm_stats[name]["grounding"]``.
    """

    model_type = "vla_lessons_prismatic_vla"

    norm_stats: dict | None = None
    n_action_bins: int = 256
    action_layout: str = "openvla"
    action_dim: int = ACTION_DIM
    proprio_dim: int = 0
    num_images: int = 1
    chunk_size: int = 1
    action_head: str = "tokens"
    grounding_dim: int = 0

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"action_head must be one of {ACTION_HEADS}, got {self.action_head!r}")
        if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size, int) or not 1 <= self.chunk_size <= 64:
            raise ValueError(f"chunk_size must be an int in [1, 64] (actions per answer), got {self.chunk_size!r}")
        if isinstance(self.num_images, bool) or self.num_images not in (1, 2):
            raise ValueError(f"num_images must be 1 (scene camera) or 2 (scene + wrist camera), got {self.num_images!r}")
        if isinstance(self.proprio_dim, bool) or not isinstance(self.proprio_dim, int) or self.proprio_dim < 0:
            raise ValueError(f"proprio_dim must be an int >= 0, got {self.proprio_dim!r}")
        if self.proprio_dim and self.norm_stats is not None:
            for name, stats in self.norm_stats.items():
                got = {len(stats.get("proprio", {}).get(q, [])) for q in ("q01", "q99")}
                if got != {self.proprio_dim}:
                    raise ValueError(f"norm_stats[{name!r}] needs 'proprio' statistics (q01/q99) of length "
                                     f"proprio_dim={self.proprio_dim}, got lengths {sorted(got)}")
        if isinstance(self.grounding_dim, bool) or not isinstance(self.grounding_dim, int) or self.grounding_dim < 0:
            raise ValueError(f"grounding_dim must be an int >= 0, got {self.grounding_dim!r}")
        if self.grounding_dim and self.action_head != "l1":
            raise ValueError("grounding feeds the continuous head's action queries: it needs action_head='l1'")
        if self.grounding_dim and self.norm_stats is not None:
            for name, stats in self.norm_stats.items():
                got = {len(stats.get("grounding", {}).get(q, [])) for q in ("q01", "q99")}
                if got != {self.grounding_dim}:
                    raise ValueError(f"norm_stats[{name!r}] needs 'grounding' statistics (q01/q99) of length "
                                     f"grounding_dim={self.grounding_dim}, got lengths {sorted(got)}")
        if self.n_action_bins != self.n_reserved_tokens:
            raise ValueError(f"n_action_bins ({self.n_action_bins}) must equal the reserved id block "
                             f"n_reserved_tokens ({self.n_reserved_tokens})")
        if self.norm_stats is not None:  # fail now, not at the first predict_action
            ActionTokenizer(self.norm_stats, vocab_size=self.text_config.vocab_size,
                            n_bins=self.n_action_bins, layout=self.action_layout)


class ProprioProjector(torch.nn.Module):
    """Robot state -> one token of the Llama's width: Linear, GELU, Linear (OpenVLA-OFT's).

    Introduced in lesson 06. ``forward`` takes the *normalised* state float32 (B, P) in [-1, 1]
    and returns (B, 1, D).
    """

    def __init__(self, proprio_dim: int, hidden: int):
        super().__init__()
        self.fc1 = torch.nn.Linear(proprio_dim, hidden)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(hidden, hidden)

    def forward(self, proprio: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(proprio)))[:, None, :]


class PrismaticVLA(PrismaticVLM):
    """A :class:`PrismaticVLM` that answers with 7 action tokens; ``predict_action`` returns the action.

    Introduced in lesson 06. Build one from a trained VLM with :func:`vla_from_vlm`; save and load
    with :func:`save_vla` / :func:`load_vla` (weights, tokenizer and statistics in one folder).
    ``model.tokenizer`` holds the text tokenizer ``predict_action`` encodes prompts with.
    """

    config_class = PrismaticVLAConfig

    def __init__(self, config: PrismaticVLAConfig):
        super().__init__(config)
        hidden = config.text_config.hidden_size
        self.proprio_projector = ProprioProjector(config.proprio_dim, hidden) if config.proprio_dim else None
        self.action_queries, self.l1_head = None, None
        if config.action_head == "l1":  # OpenVLA-OFT's parallel decoding with a continuous head
            self.action_queries = ActionQueries(config.chunk_size, hidden)
            self.l1_head = L1RegressionHead(hidden, config.action_dim)
        self.grounding_query, self.grounding_head, self.where_projector = None, None, None
        if config.grounding_dim:  # say where before acting (vla_lessons.model.grounding)
            self.grounding_query = ActionQueries(1, hidden)
            self.grounding_head = GroundingHead(hidden, config.grounding_dim)
            self.where_projector = ProprioProjector(config.grounding_dim, hidden)
        self.tokenizer = None
        self._action_tokenizer = None

    # ---------------------------------------------------------------- proprioception

    def normalize_proprio(self, states, unnorm_key: str | None = None) -> torch.Tensor:
        """Raw robot states (B, P) -> float32 (B, P) in [-1, 1] with the q01/q99 of ``unnorm_key``.

        Introduced in lesson 06. A dimension with q01 == q99 (a constant, like the state's pad
        entry) maps to 0. Raises ``ValueError`` on a wrong shape or non-finite values.
        """
        p = self.config.proprio_dim
        if not p:
            raise ValueError("this VLA reads no robot state (config.proprio_dim == 0)")
        states = _checked_rows(states, p, "robot states")
        return torch.as_tensor(self._to_unit(states, "proprio", unnorm_key), dtype=torch.float32)

    def _bounds(self, part: str, unnorm_key: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The q01 and q99 of ``norm_stats[key][part]``, float64."""
        stats = self.config.norm_stats[self.action_tokenizer.resolve_unnorm_key(unnorm_key)][part]
        return np.asarray(stats["q01"], np.float64), np.asarray(stats["q99"], np.float64)

    def _to_unit(self, values: np.ndarray, part: str, unnorm_key: str | None) -> np.ndarray:
        """Raw values (B, P) -> [-1, 1] with the q01/q99 of ``norm_stats[key][part]`` (constant dims -> 0)."""
        low, high = self._bounds(part, unnorm_key)
        span = np.where(high > low, high - low, 1.0)
        return np.where(high > low, np.clip(2 * (values - low) / span - 1, -1, 1), 0.0)

    # ---------------------------------------------------------------- grounding

    def normalize_grounding(self, grounding, unnorm_key: str | None = None) -> torch.Tensor:
        """Raw groundings in metres (B, G) -> float32 (B, G) in [-1, 1] (``norm_stats[key]["grounding"]``).

        Introduced in lesson 06. Raises ``ValueError`` on a wrong shape or non-finite values.
        """
        g = self.config.grounding_dim
        if not g:
            raise ValueError("this VLA does not ground (config.grounding_dim == 0)")
        grounding = _checked_rows(grounding, g, "groundings", " in metres")
        return torch.as_tensor(self._to_unit(grounding, "grounding", unnorm_key), dtype=torch.float32)

    def unnormalize_grounding(self, values, unnorm_key: str | None = None) -> np.ndarray:
        """Normalised groundings (B, G) -> metres float64 (B, G), clipped to [-1, 1] first."""
        if not self.config.grounding_dim:
            raise ValueError("this VLA does not ground (config.grounding_dim == 0)")
        low, high = self._bounds("grounding", unnorm_key)
        values = np.clip(np.asarray(values, np.float64), -1.0, 1.0)
        return np.where(high > low, (values + 1) / 2 * (high - low) + low, low)

    def proprio_tokens(self, proprio, batch: int):
        """The proprioception token (B, 1, D) from normalised ``proprio`` (B, P), or None without it."""
        if self.proprio_projector is None:
            if proprio is not None:
                raise ValueError("this VLA reads no robot state (config.proprio_dim == 0); do not pass proprio")
            return None
        p = self.config.proprio_dim
        if proprio is None:
            raise ValueError(f"this VLA reads the robot state: pass proprio, float32 ({batch}, {p}) normalised "
                             "with normalize_proprio (predict_action takes the raw state)")
        if not isinstance(proprio, torch.Tensor) or tuple(proprio.shape) != (batch, p):
            raise ValueError(f"proprio must be a float tensor ({batch}, {p}), got "
                             f"{tuple(getattr(proprio, 'shape', ())) or type(proprio).__name__}")
        if not torch.isfinite(proprio).all():
            raise ValueError("proprio contains NaN or inf")
        return self.proprio_projector(proprio.float())

    # ---------------------------------------------------------------- wrist camera

    def wrist_tokens(self, wrist_pixel_values, batch: int):
        """The wrist camera's visual tokens (B, N, D) from its pixel values (B, 6, S, S), or None without it."""
        if self.config.num_images == 1:
            if wrist_pixel_values is not None:
                raise ValueError("this VLA reads the scene camera only (config.num_images == 1); "
                                 "do not pass a wrist image")
            return None
        if wrist_pixel_values is None:
            raise ValueError("this VLA reads the wrist camera too (config.num_images == 2): pass wrist_pixel_values "
                             f"({batch}, 6, S, S) from model.preprocess(wrist_images), or to predict_actions "
                             "wrist_images uint8 (B, H, W, 3), to predict_action wrist_image uint8 (H, W, 3)")
        s = self.config.image_size
        if (not isinstance(wrist_pixel_values, torch.Tensor) or wrist_pixel_values.dtype != torch.float32
                or tuple(wrist_pixel_values.shape) != (batch, 6, s, s)):
            raise ValueError(f"wrist_pixel_values must be float32 ({batch}, 6, {s}, {s}) -- make them from uint8 wrist "
                             f"images with model.preprocess(wrist_images) -- got "
                             f"{getattr(wrist_pixel_values, 'dtype', type(wrist_pixel_values).__name__)} "
                             f"{tuple(getattr(wrist_pixel_values, 'shape', ()))}")
        return self.visual_tokens(wrist_pixel_values)

    def extra_tokens(self, batch: int, proprio=None, wrist_pixel_values=None):
        """What follows the scene camera's N tokens: the wrist camera's N tokens, then the state token.

        (B, K, D) with K = N * (num_images - 1) + (1 if proprio_dim else 0), or None when K = 0.
        """
        parts = [t for t in (self.wrist_tokens(wrist_pixel_values, batch), self.proprio_tokens(proprio, batch))
                 if t is not None]
        return torch.cat(parts, dim=1) if parts else None

    def forward(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, labels: torch.Tensor | None = None, *,
                proprio: torch.Tensor | None = None, wrist_pixel_values: torch.Tensor | None = None,
                vision_features: torch.Tensor | None = None,
                past_key_values=None, use_cache: bool | None = None, logits_to_keep: int = 0):
        """:meth:`PrismaticVLM.forward` plus the wrist camera and the robot state when the VLA reads them.

        ``wrist_pixel_values`` (B, 6, S, S) when ``num_images == 2``; ``proprio`` (B, P), normalised,
        when ``proprio_dim > 0``. Their tokens sit right after the scene camera's visual tokens, in
        that order (N + N + 1 inserted positions with both).
        """
        extra = None
        if pixel_values is not None or vision_features is not None:
            extra = self.extra_tokens(input_ids.shape[0], proprio, wrist_pixel_values)
        elif proprio is not None or wrist_pixel_values is not None:
            raise ValueError("proprio and wrist_pixel_values go with the scene image: pass pixel_values (or "
                             "vision_features) too; a decoding step that continues from the KV cache takes none")
        embeds, attention_mask, labels = self.prepare_inputs_embeds(
            input_ids, pixel_values, attention_mask, labels, vision_features=vision_features,
            past_key_values=past_key_values, extra_tokens=extra)
        return self._run_llm(embeds, attention_mask, labels=labels, past_key_values=past_key_values,
                             use_cache=use_cache, logits_to_keep=logits_to_keep)

    # ---------------------------------------------------------------- actions <-> ids

    @property
    def action_tokenizer(self) -> ActionTokenizer:
        """Lesson 02's :class:`ActionTokenizer` on this model's vocabulary and statistics."""
        if self.config.norm_stats is None:
            raise ValueError("this VLA has no normalisation statistics (config.norm_stats is None); "
                             "build it with vla_from_vlm(vlm, tokenizer, norm_stats)")
        if self._action_tokenizer is None:
            self._action_tokenizer = ActionTokenizer(self.config.norm_stats, vocab_size=self.vocab_size,
                                                     n_bins=self.config.n_action_bins,
                                                     layout=self.config.action_layout)
        return self._action_tokenizer

    @property
    def action_ids(self) -> range:
        """The ids that are actions: ``vocab_size - n_bins .. vocab_size - 1``."""
        return range(self.vocab_size - self.config.n_action_bins, self.vocab_size)

    # ---------------------------------------------------------------- the continuous head (OFT)

    def normalized_action_chunks(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                                 attention_mask: torch.Tensor | None = None, *, proprio: torch.Tensor | None = None,
                                 wrist_pixel_values: torch.Tensor | None = None, grounding: torch.Tensor | None = None,
                                 return_grounding: bool = False):
        """The L1 head's chunk for left-padded prompts: float32 (B, K, 7) in normalised units, with grad.

        Introduced in lesson 06 (``config.action_head == "l1"``). One forward pass: the K action
        queries follow each prompt, and the head reads their last hidden states. A grounding VLA
        (``config.grounding_dim = G``) needs ``grounding`` (B, G), normalised, for its where token;
        ``return_grounding=True`` also returns what its grounding head answers in the same pass
        (``(chunk, grounding (B, G))``; the query precedes the where token, so it cannot peek).
        """
        if self.l1_head is None:
            raise ValueError("this VLA answers with action tokens (config.action_head == 'tokens'); "
                             "add_l1_head gives it OpenVLA-OFT's continuous head")
        g = self.config.grounding_dim
        if g and grounding is None:
            raise ValueError(f"this VLA acts on a grounding: pass grounding, float32 (B, {g}) normalised with "
                             "normalize_grounding (the truth in training, normalized_grounding's answer at run time)")
        if not g and (grounding is not None or return_grounding):
            raise ValueError("this VLA does not ground (config.grounding_dim == 0); do not pass grounding")
        batch, k = input_ids.shape[0], self.config.chunk_size
        tail = [self.grounding_query(batch), self.where_tokens(grounding, batch)] if g else []
        hidden, tokens = self._run_with_tail(input_ids, pixel_values, attention_mask, proprio, wrist_pixel_values,
                                             tail + [self.action_queries(batch)])
        chunk = self.l1_head(hidden[:, -k:])
        if return_grounding:
            return chunk, self.grounding_head(hidden[:, -k - 2], tokens)
        return chunk

    def where_tokens(self, grounding: torch.Tensor, batch: int) -> torch.Tensor:
        """The where token (B, 1, D) from a normalised grounding (B, G)."""
        g = self.config.grounding_dim
        if not isinstance(grounding, torch.Tensor) or tuple(grounding.shape) != (batch, g):
            raise ValueError(f"grounding must be a float tensor ({batch}, {g}), got "
                             f"{tuple(getattr(grounding, 'shape', ())) or type(grounding).__name__}")
        if not torch.isfinite(grounding).all():
            raise ValueError("grounding contains NaN or inf")
        return self.where_projector(grounding.float())

    def normalized_grounding(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                             attention_mask: torch.Tensor | None = None, *, proprio: torch.Tensor | None = None,
                             wrist_pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Where the task's things are, for left-padded prompts: float32 (B, G) in normalised units, with grad.

        Introduced in lesson 06 (``config.grounding_dim > 0``). One forward pass that ends at the
        grounding query; :class:`~vla_lessons.model.grounding.GroundingHead` reads its hidden state.
        """
        if self.grounding_head is None:
            raise ValueError("this VLA does not ground (config.grounding_dim == 0)")
        batch = input_ids.shape[0]
        hidden, tokens = self._run_with_tail(input_ids, pixel_values, attention_mask, proprio, wrist_pixel_values,
                                             [self.grounding_query(batch)])
        return self.grounding_head(hidden[:, -1], tokens)

    def _run_with_tail(self, input_ids, pixel_values, attention_mask, proprio, wrist_pixel_values, tail: list):
        """The Llama's last hidden states (B, T', D) for image + extras + prompt + ``tail`` embeddings,
        and the scene camera's visual tokens (B, N, D)."""
        self._check_ids(input_ids)
        if pixel_values is None:
            raise ValueError("the continuous head needs the scene image: pass pixel_values from model.preprocess")
        embeds, mask, _ = self.prepare_inputs_embeds(input_ids, None, attention_mask)
        tokens = self.visual_tokens(pixel_values)
        if tokens.shape[0] != embeds.shape[0]:
            raise ValueError(f"batch mismatch: {tokens.shape[0]} images for {embeds.shape[0]} prompts")
        extra = self.extra_tokens(input_ids.shape[0], proprio, wrist_pixel_values)
        inserted = tokens if extra is None else torch.cat([tokens, extra.to(tokens.dtype)], dim=1)
        embeds, mask, _ = self._insert_patches(input_ids, embeds, inserted, mask, None)
        batch = embeds.shape[0]
        tail = torch.cat([t.to(embeds.dtype) for t in tail], dim=1)
        embeds = torch.cat([embeds, tail], dim=1)
        if mask is None:
            mask = torch.ones(batch, embeds.shape[1] - tail.shape[1], dtype=torch.long)
        mask = torch.cat([mask, mask.new_ones(batch, tail.shape[1])], dim=1)
        position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
        hidden = self.language_model.model(inputs_embeds=embeds, attention_mask=mask,
                                           position_ids=position_ids).last_hidden_state
        return hidden, tokens

    # ---------------------------------------------------------------- decoding

    @torch.no_grad()
    def generate_action_ids(self, input_ids: torch.Tensor, pixel_values: torch.Tensor,
                            attention_mask: torch.Tensor | None = None, *,
                            restrict: bool = True, proprio: torch.Tensor | None = None,
                            wrist_pixel_values: torch.Tensor | None = None) -> torch.Tensor:
        """Greedy decoding of ``chunk_size * action_dim`` tokens with the KV cache: long (B, 7 K).

        Introduced in lesson 06 (K = ``config.chunk_size``, 1 unless the VLA predicts action chunks). Prompts must be left-padded (:func:`encode_action_prompts`).
        ``restrict=True`` takes the argmax over the action block only; ``restrict=False`` over the
        whole vocabulary (openvla-7b's behaviour), so a text id can come out.
        """
        if self.config.action_head != "tokens":
            raise ValueError("this VLA has OpenVLA-OFT's continuous head (config.action_head == 'l1'): it answers "
                             "with normalized_action_chunks, not action ids")
        self._check_ids(input_ids)
        was_training = self.training
        self.eval()
        low = self.vocab_size - self.config.n_action_bins
        try:
            embeds, mask, _ = self.prepare_inputs_embeds(
                input_ids, pixel_values, attention_mask,
                extra_tokens=self.extra_tokens(input_ids.shape[0], proprio, wrist_pixel_values))
            out = self._run_llm(embeds, mask, use_cache=True, logits_to_keep=1)
            new = []
            n_tokens = self.config.action_dim * self.config.chunk_size
            for step in range(n_tokens):
                logits = out.logits[:, -1]
                ids = (logits[:, low:].argmax(-1) + low) if restrict else logits.argmax(-1)
                new.append(ids)
                if step == n_tokens - 1:
                    break
                if mask is not None:
                    mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
                out = self._run_llm(self.get_input_embeddings()(ids[:, None]), mask,
                                    past_key_values=out.past_key_values, use_cache=True, logits_to_keep=1)
        finally:
            self.train(was_training)
        return torch.stack(new, dim=1)

    @torch.no_grad()
    def predict_action(self, image, instruction: str, unnorm_key: str | None = None, *,
                       restrict: bool = True, proprio=None, wrist_image=None, grounding=None) -> np.ndarray:
        """One camera image and one instruction -> the un-normalised action, float64 (7,).

        Introduced in lesson 06; the signature of openvla-7b's ``predict_action``. ``image`` is a
        uint8 (H, W, 3) array (any square size: it is resized to the model's); ``unnorm_key``
        names the dataset whose statistics un-normalise the action (None when there is one).
        ``proprio``: the raw robot state (P,), needed when ``config.proprio_dim > 0`` (as OFT's
        ``get_action`` reads ``obs["state"]``); ``wrist_image``: the wrist camera's uint8 (H, W, 3),
        needed when ``config.num_images == 2``. A VLA that predicts action chunks returns the
        chunk's first action (:meth:`predict_action_chunk` returns all of them). A grounding VLA takes
        ``grounding`` (G,) in metres, or grounds from ``image`` when it is None.
        """
        return self.predict_action_chunk(image, instruction, unnorm_key, restrict=restrict, proprio=proprio,
                                         wrist_image=wrist_image, grounding=grounding)[0]

    @torch.no_grad()
    def predict_action_chunk(self, image, instruction: str, unnorm_key: str | None = None, *,
                             restrict: bool = True, proprio=None, wrist_image=None, grounding=None) -> np.ndarray:
        """:meth:`predict_action`, but every action of the chunk: float64 (K, 7), K = ``config.chunk_size``.

        Introduced in lesson 06 (OpenVLA-OFT's ``get_action`` also returns the chunk).
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"image must be one uint8 (H, W, 3) camera image, got shape {image.shape}")
        states = None if proprio is None else np.asarray(proprio)[None]
        wrist = None
        if wrist_image is not None:
            wrist = np.asarray(wrist_image)
            if wrist.ndim != 3 or wrist.shape[-1] != 3:
                raise ValueError(f"wrist_image must be one uint8 (H, W, 3) camera image, got shape {wrist.shape}")
            wrist = wrist[None]
        return self.predict_action_chunks(image[None], [instruction], unnorm_key, restrict=restrict, proprio=states,
                                          wrist_images=wrist,
                                          grounding=None if grounding is None else np.asarray(grounding)[None])[0]

    @torch.no_grad()
    def predict_actions(self, images, instructions: list[str], unnorm_key: str | None = None, *,
                        restrict: bool = True, proprio=None, wrist_images=None, grounding=None) -> np.ndarray:
        """A batch: uint8 images (B, H, W, 3) and B instructions -> actions float64 (B, 7).

        Introduced in lesson 06. The first action of each chunk when the VLA predicts chunks
        (:meth:`predict_action_chunks`: all of them); the arguments are those of that method.
        """
        return self.predict_action_chunks(images, instructions, unnorm_key, restrict=restrict, proprio=proprio,
                                          wrist_images=wrist_images, grounding=grounding)[:, 0]

    @torch.no_grad()
    def predict_action_chunks(self, images, instructions: list[str], unnorm_key: str | None = None, *,
                              restrict: bool = True, proprio=None, wrist_images=None, grounding=None) -> np.ndarray:
        """A batch: uint8 images (B, H, W, 3) and B instructions -> action chunks float64 (B, K, 7).

        Introduced in lesson 06. K = ``config.chunk_size`` (1 for OpenVLA). A non-action id (possible only with ``restrict=False``) is a
        ``ValueError`` naming it, never a silently clipped action. ``proprio``: raw robot states
        (B, P) when ``config.proprio_dim > 0``; ``wrist_images``: uint8 (B, H, W, 3) from the wrist
        camera when ``config.num_images == 2``; ``grounding``: (B, G) in metres for a grounding VLA
        (``config.grounding_dim = G``), where the task's things started -- None grounds from ``images``
        (:meth:`predict_grounding`; a rollout grounds once, at reset, and passes it every step).
        """
        inputs = self._action_inputs(images, instructions, unnorm_key, proprio, wrist_images)
        key, enc, states, wrist = inputs["key"], inputs["enc"], inputs["states"], inputs["wrist"]
        images = inputs["images"]
        if self.config.action_head == "l1":  # one forward pass, no bins: clip to [-1, 1] and un-normalise
            where = None
            if self.config.grounding_dim:
                if grounding is None:
                    grounding = self.predict_grounding(images, instructions, unnorm_key, proprio=proprio,
                                                       wrist_images=wrist_images)
                where = self.normalize_grounding(grounding, key)
                if len(where) != len(images):
                    raise ValueError(f"give one grounding per image: {len(images)} images, {len(where)} groundings")
            elif grounding is not None:
                raise ValueError("this VLA does not ground (config.grounding_dim == 0); do not pass grounding")
            was_training = self.training
            self.eval()
            try:
                chunk = self.normalized_action_chunks(enc["input_ids"], self.preprocess(images), enc["attention_mask"],
                                                      proprio=states, wrist_pixel_values=wrist, grounding=where)
            finally:
                self.train(was_training)
            values = np.clip(chunk.double().numpy(), -1.0, 1.0)
            return np.asarray(self.action_tokenizer.normalizer(key).unnormalize(values), dtype=np.float64)
        if grounding is not None:
            raise ValueError("this VLA does not ground (config.grounding_dim == 0); do not pass grounding")
        ids = self.generate_action_ids(enc["input_ids"], self.preprocess(images), enc["attention_mask"],
                                       restrict=restrict, proprio=states, wrist_pixel_values=wrist)
        ids = ids.numpy().reshape(len(images), self.config.chunk_size, self.config.action_dim)
        return np.asarray(self.action_tokenizer.decode(ids, key), dtype=np.float64)

    @torch.no_grad()
    def predict_grounding(self, images, instructions: list[str], unnorm_key: str | None = None, *,
                          proprio=None, wrist_images=None) -> np.ndarray:
        """Where the task's object and receptacle are, from uint8 images (B, H, W, 3): metres float64 (B, G).

        Introduced in lesson 06 (``config.grounding_dim = G``; :mod:`~vla_lessons.model.grounding`).
        The arguments are those of :meth:`predict_action_chunks`.
        """
        if not self.config.grounding_dim:
            raise ValueError("this VLA does not ground (config.grounding_dim == 0)")
        inputs = self._action_inputs(images, instructions, unnorm_key, proprio, wrist_images)
        was_training = self.training
        self.eval()
        try:
            out = self.normalized_grounding(inputs["enc"]["input_ids"], self.preprocess(inputs["images"]),
                                            inputs["enc"]["attention_mask"], proprio=inputs["states"],
                                            wrist_pixel_values=inputs["wrist"])
        finally:
            self.train(was_training)
        return self.unnormalize_grounding(out.double().numpy(), inputs["key"])

    def _action_inputs(self, images, instructions, unnorm_key, proprio, wrist_images) -> dict:
        """Check and encode what :meth:`predict_action_chunks` takes: images, key, prompts, states, wrist."""
        if self.tokenizer is None:
            raise ValueError("model.tokenizer is not set: load the VLA with load_vla() or build it with vla_from_vlm()")
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 (B, H, W, 3), got {images.dtype} {images.shape}")
        if isinstance(instructions, str) or len(instructions) != len(images):
            raise ValueError(f"give one instruction per image: {len(images)} images, "
                             f"{1 if isinstance(instructions, str) else len(instructions)} instructions")
        key = self.action_tokenizer.resolve_unnorm_key(unnorm_key)
        enc = encode_action_prompts(self.tokenizer, instructions)
        states = None
        if proprio is not None or self.config.proprio_dim:
            if proprio is None:
                raise ValueError(f"this VLA reads the robot state: pass proprio, the raw states "
                                 f"({len(images)}, {self.config.proprio_dim})")
            states = self.normalize_proprio(proprio, key)
            if len(states) != len(images):
                raise ValueError(f"give one robot state per image: {len(images)} images, {len(states)} states")
        wrist = None  # a missing or unexpected wrist camera is reported by wrist_tokens
        if wrist_images is not None:
            wrist_images = np.asarray(wrist_images)
            if wrist_images.shape != images.shape or wrist_images.dtype != np.uint8:
                raise ValueError(f"wrist_images must be uint8 of the scene images' shape {images.shape}, "
                                 f"got {wrist_images.dtype} {wrist_images.shape}")
            wrist = self.preprocess(wrist_images)
        return {"images": images, "key": key, "enc": enc, "states": states, "wrist": wrist}


def _checked_rows(values, dim: int, name: str, unit: str = "") -> np.ndarray:
    """``values`` as float64 (B, dim), or a ValueError naming ``name`` on a wrong shape or NaN/inf."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != dim:
        raise ValueError(f"{name} must be (B, {dim}){unit}, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contain NaN or inf")
    return values


# ----------------------------------------------------------------------------- prompts and labels


def build_action_prompt(instruction: str) -> str:
    """OpenVLA's prompt for one instruction (lower-cased, stripped, no final full stop).

    Introduced in lesson 06.
    """
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"an instruction must be a non-empty string, got {instruction!r}")
    return ACTION_PROMPT.format(instruction=instruction.strip().rstrip(".").lower())


def encode_action_prompts(tokenizer, instructions: list[str]) -> dict[str, torch.Tensor]:
    """Prompts for :meth:`PrismaticVLA.generate_action_ids`: ``input_ids``, ``attention_mask`` (B, T), left-padded.

    Introduced in lesson 06.
    """
    if isinstance(instructions, str) or not instructions:
        raise ValueError("instructions must be a non-empty list of strings")
    rows = [tokenizer(build_action_prompt(s))["input_ids"] for s in instructions]
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    return {"input_ids": torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long),
            "attention_mask": torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)}


def encode_action_examples(tokenizer, instructions: list[str], action_ids) -> dict[str, torch.Tensor]:
    """Training rows ``<s> prompt a1..a7``: ``input_ids``, ``attention_mask``, ``labels`` (B, T).

    Introduced in lesson 06. ``action_ids`` is (B, 7) (from ``ActionTokenizer.encode``). Rows are
    **left**-padded so the 7 action ids sit in the last 7 positions of every row; ``labels`` are
    ``-100`` everywhere except those 7 positions (the loss is on action tokens only).
    """
    action_ids = torch.as_tensor(np.asarray(action_ids), dtype=torch.long)
    if isinstance(instructions, str) or action_ids.ndim != 2 or len(instructions) != action_ids.shape[0]:
        raise ValueError(f"need one instruction per row of action_ids (B, D); got {len(instructions)} "
                         f"instructions and action_ids of shape {tuple(action_ids.shape)}")
    prompts = encode_action_prompts(tokenizer, instructions)
    input_ids = torch.cat([prompts["input_ids"], action_ids], dim=1)
    mask = torch.cat([prompts["attention_mask"], torch.ones_like(action_ids)], dim=1)
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, -action_ids.shape[1]:] = action_ids
    return {"input_ids": input_ids, "attention_mask": mask, "labels": labels}


# ----------------------------------------------------------------------------- building, saving


def _clean_stats(norm_stats: dict) -> dict:
    """JSON-safe copy of ``{name: {"action": {...}}}`` (numpy arrays -> lists)."""
    def plain(x):
        if isinstance(x, dict):
            return {str(k): plain(v) for k, v in x.items()}
        if isinstance(x, (list, tuple, np.ndarray)):
            return np.asarray(x).tolist()
        if isinstance(x, np.generic):
            return x.item()
        return x

    if not isinstance(norm_stats, dict) or not norm_stats:
        raise ValueError("norm_stats must be a non-empty dict {dataset_name: {'action': {'q01': ..., 'q99': ...}}}")
    if "action" in norm_stats:  # one LeRobot stats dict: name it
        norm_stats = {"default": norm_stats}
    return {name: {part: plain(stats[part]) for part in ("action", "proprio", "grounding") if part in stats}
            for name, stats in norm_stats.items()}


def vla_from_vlm(vlm: PrismaticVLM, tokenizer, norm_stats: dict, *, layout: str = "openvla",
                 visual_position: str | None = None, proprio_dim: int = 0, num_images: int = 1,
                 chunk_size: int | None = None, action_head: str | None = None,
                 grounding_dim: int | None = None) -> PrismaticVLA:
    """A :class:`PrismaticVLA` holding a copy of ``vlm``'s weights and the action statistics.

    Introduced in lesson 06. ``norm_stats``: ``{dataset_name: stats}`` or one LeRobot ``stats.json``
    dict (named ``"default"``). Nothing is added to the network: the action ids already exist.
    ``visual_position="learned-2d"`` on a VLM without it adds zero-initialised 2-D patch positions
    (:class:`~vla_lessons.model.vlm.PatchPosition2D`); None keeps the VLM's setting.
    ``proprio_dim > 0`` adds a freshly initialised :class:`ProprioProjector` (``norm_stats`` must
    then hold ``"proprio"`` statistics). ``num_images=2`` also reads the wrist camera (no new
    weights: it shares the backbone and the projector). ``chunk_size``: actions per answer
    (None: ``vlm``'s own when it is a VLA, else 1); ``action_head`` likewise (None: ``vlm``'s, else
    ``"tokens"``); a new ``"l1"`` head starts untrained; ``grounding_dim`` likewise (None: ``vlm``'s,
    else 0), a new grounding starts untrained.
    """
    fields = {k: v for k, v in vlm.config.to_dict().items()
              if k in PrismaticVLMConfig.__dataclass_fields__ or k.endswith("_config")}
    if visual_position is not None:
        fields["visual_position"] = visual_position
    if chunk_size is None:
        chunk_size = getattr(vlm.config, "chunk_size", 1)
    if action_head is None:
        action_head = getattr(vlm.config, "action_head", "tokens")
    if grounding_dim is None:
        grounding_dim = getattr(vlm.config, "grounding_dim", 0)
    config = PrismaticVLAConfig(**fields, norm_stats=_clean_stats(norm_stats), action_layout=layout,
                                proprio_dim=proprio_dim, num_images=num_images, chunk_size=chunk_size,
                                action_head=action_head, grounding_dim=grounding_dim)
    model = PrismaticVLA(config)
    weights = copy.deepcopy(vlm.state_dict())
    if chunk_size != getattr(vlm.config, "chunk_size", 1):  # queries for another chunk size: start afresh
        weights = {k: v for k, v in weights.items() if not k.startswith("action_queries.")}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    new = ("patch_position.", "proprio_projector.", "action_queries.", "l1_head.", "grounding_query.",
           "grounding_head.", "where_projector.")
    if unexpected or any(not k.startswith(new) for k in missing):
        raise ValueError(f"the VLM's weights do not fit the VLA: missing {missing}, unexpected {unexpected}")
    model.tokenizer = tokenizer
    return model.train(vlm.training)


def add_proprio(vla: PrismaticVLA, proprio_stats: dict) -> PrismaticVLA:
    """A copy of ``vla`` that also reads the robot state (a new :class:`ProprioProjector`).

    Introduced in lesson 06. ``proprio_stats`` (``q01``/``q99`` of ``observation.state``) join the
    statistics of every dataset in ``norm_stats``; every other weight is copied, and the new
    token sits after the visual tokens, so the copy needs fine-tuning before it acts well.
    """
    if vla.config.proprio_dim:
        raise ValueError("this VLA already reads the robot state")
    stats = {name: {**s, "proprio": proprio_stats} for name, s in vla.config.norm_stats.items()}
    dim = len(np.asarray(proprio_stats["q01"]))
    return vla_from_vlm(vla, vla.tokenizer, stats, layout=vla.config.action_layout, proprio_dim=dim,
                        num_images=vla.config.num_images)


def set_action_chunk(vla: PrismaticVLA, chunk_size: int) -> PrismaticVLA:
    """Make ``vla`` answer with ``chunk_size`` actions (``7 * chunk_size`` tokens); returns it, changed in place.

    Introduced in lesson 06. No weight changes: the action ids are the same, the answer is
    longer, so the VLA needs fine-tuning on chunks (:func:`~vla_lessons.train.finetune.finetune_vla`
    trains on the next ``chunk_size`` actions of each step) before its chunks are any good.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= 64:
        raise ValueError(f"chunk_size must be an int in [1, 64], got {chunk_size!r}")
    if vla.config.action_head != "tokens":
        raise ValueError("set_action_chunk lengthens a token answer; a VLA with the L1 head has one query per "
                         "action of its chunk: use add_l1_head(vla, chunk_size) for another size")
    vla.config.chunk_size = chunk_size
    return vla


def add_l1_head(vla: PrismaticVLA, chunk_size: int) -> PrismaticVLA:
    """A copy of ``vla`` with OpenVLA-OFT's continuous head: ``chunk_size`` queries and an L1-trained MLP.

    Introduced in lesson 06. Every weight of ``vla`` is copied; the queries and the head are new
    (:mod:`~vla_lessons.model.action_head`), so the copy needs fine-tuning before it acts. The
    action ids stay in the vocabulary but are no longer the answer.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= 64:
        raise ValueError(f"chunk_size must be an int in [1, 64], got {chunk_size!r}")
    c = vla.config
    return vla_from_vlm(vla, vla.tokenizer, c.norm_stats, layout=c.action_layout, proprio_dim=c.proprio_dim,
                        num_images=c.num_images, chunk_size=chunk_size, action_head="l1",
                        grounding_dim=c.grounding_dim)


def add_grounding(vla: PrismaticVLA, grounding_stats: dict) -> PrismaticVLA:
    """A copy of ``vla`` (with the L1 head) that says where before it acts (:mod:`~vla_lessons.model.grounding`).

    Introduced in lesson 06. ``grounding_stats`` (``q01``/``q99`` of the groundings, metres) join the
    statistics of every dataset in ``norm_stats``; the grounding query, head and where token are new,
    and so are learned 2-D patch positions when the VLA has none (zero at first: the grounding head's
    cross-attention reads the visual tokens, and where a patch sits is what it has to find).
    """
    if vla.config.grounding_dim:
        raise ValueError("this VLA already grounds")
    if vla.config.action_head != "l1":
        raise ValueError("grounding feeds the continuous head's action queries: add_l1_head first")
    c = vla.config
    stats = {name: {**s, "grounding": grounding_stats} for name, s in c.norm_stats.items()}
    return vla_from_vlm(vla, vla.tokenizer, stats, layout=c.action_layout, proprio_dim=c.proprio_dim,
                        num_images=c.num_images, grounding_dim=len(np.asarray(grounding_stats["q01"])),
                        visual_position="learned-2d")


def add_wrist_camera(vla: PrismaticVLA) -> PrismaticVLA:
    """A copy of ``vla`` that also reads the wrist camera (OpenVLA-OFT's second image).

    Introduced in lesson 06. Nothing new is learned from scratch: the wrist image goes through the
    same backbone and projector as the scene image, and its N tokens follow the scene camera's
    (before the state token). The copy still needs fine-tuning to make use of them.
    """
    if vla.config.num_images == 2:
        raise ValueError("this VLA already reads the wrist camera")
    stats = vla.config.norm_stats
    return vla_from_vlm(vla, vla.tokenizer, stats, layout=vla.config.action_layout,
                        proprio_dim=vla.config.proprio_dim, num_images=2)


def save_vla(model: PrismaticVLA, path, dtype: torch.dtype = torch.float16) -> Path:
    """Save weights, tokenizer, ``config.json`` (with ``norm_stats``) and ``dataset_statistics.json``.

    Introduced in lesson 06. Weights are stored in ``dtype`` (float16 halves the file) and come
    back as float32 from :func:`load_vla`.
    """
    from .vlm import save_vlm

    if model.config.norm_stats is None:
        raise ValueError("a VLA without norm_stats cannot un-normalise its actions; refusing to save it")
    path = save_vlm(model, model.tokenizer, path, dtype=dtype)
    (Path(path) / STATS_FILE).write_text(json.dumps(model.config.norm_stats, indent=1) + "\n")
    return Path(path)


def load_vla(path) -> PrismaticVLA:
    """Load what :func:`save_vla` saved: the VLA in float32 and eval mode, ``model.tokenizer`` set.

    Introduced in lesson 06. Checks that ``dataset_statistics.json`` agrees with ``config.json``.
    """
    from vla_lessons.vision.encoders import quiet_transformers

    from .text_tokenizer import load_text_tokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"no saved VLA at {path} (config.json missing); build it with "
                         "`python -m vla_lessons.build vla`")
    with quiet_transformers():
        model = PrismaticVLA.from_pretrained(path, dtype=torch.float32).eval()
    stats_file = path / STATS_FILE
    if stats_file.is_file() and json.loads(stats_file.read_text()) != model.config.norm_stats:
        raise ValueError(f"{stats_file} disagrees with the norm_stats in {path / 'config.json'}")
    model.tokenizer = load_text_tokenizer(path)
    return model
