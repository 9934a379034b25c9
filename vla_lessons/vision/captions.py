"""Captions from a scene's ground truth, and the word-level tokenizer of the caption language.

Introduced in lesson 04.

SigLIP learns from (image, caption) pairs. On the web the captions are alt-texts; here they are
written from the simulator's ground truth, so they are always right:

    >>> caption_scene([ObjectRecord("cube_0", "red", "cube", "small", (0.1, 0.0)),
    ...                ObjectRecord("bowl_0", "blue", "bowl", "large", (0.3, 0.0))])
    'a small red cube left of a large blue bowl'

Everything here is a pure function of the object records: no simulator, no randomness, so the
caption of a scene can be tested on its own.

Conventions. A position is ``(x, y)`` or ``(x, y, z)`` in metres on the table. "Right" is the
direction ``right_axis`` and "behind" (farther from the camera) is ``forward_axis``, both in the
table's ``(x, y)`` plane; the defaults (+x is right, +y is behind) match a camera that looks
along +y. A size is a word (``"small"``, ``"large"``), a number in metres (the object's
half-extent) turned into a word with the threshold ``small_below``, or ``None`` (no size word).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

#: Special tokens of the caption tokenizer, in id order: padding, unknown word, end of caption.
PAD, UNK, EOS = "[PAD]", "[UNK]", "[EOS]"
SPECIAL_TOKENS = (PAD, UNK, EOS)

#: Spatial relations a caption can use, as written in captions.
RELATIONS = ("left of", "right of", "in front of", "behind")

#: Default threshold (metres of half-extent) below which a numeric size reads "small".
DEFAULT_SMALL_BELOW = 0.025


@dataclass(frozen=True)
class ObjectRecord:
    """One object of a scene, as the simulator knows it.

    Introduced in lesson 04.

    Attributes:
        name: unique name in the scene, e.g. ``"cube_0"`` (not used in captions).
        colour: colour word, e.g. ``"red"``.
        shape: shape word, e.g. ``"cube"``, ``"bowl"``.
        size: a size word (``"small"``), a half-extent in metres (``0.02``) or None.
        position: ``(x, y)`` or ``(x, y, z)`` in metres, finite.
        kind: ``"object"`` (movable, what the probes ask about) or ``"receptacle"``.
    """

    name: str
    colour: str
    shape: str
    size: str | float | None
    position: tuple[float, ...]
    kind: str = "object"

    def __post_init__(self):
        for field in ("colour", "shape"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"object {self.name!r}: {field} must be a non-empty word, got {value!r}")
        if self.size is None:
            pass
        elif isinstance(self.size, str):
            if not self.size.strip():
                raise ValueError(f"object {self.name!r}: size must be a word or a number, got ''")
        elif isinstance(self.size, bool) or not isinstance(self.size, numbers.Real) or not math.isfinite(self.size):
            raise ValueError(f"object {self.name!r}: size must be a word or a finite number, got {self.size!r}")
        try:
            position = tuple(float(v) for v in self.position)
        except (TypeError, ValueError):
            raise ValueError(f"object {self.name!r}: position must be 2 or 3 numbers, got {self.position!r}") from None
        if len(position) not in (2, 3) or not all(math.isfinite(v) for v in position):
            raise ValueError(f"object {self.name!r}: position must be 2 or 3 finite numbers, got {self.position!r}")
        object.__setattr__(self, "position", position)


def as_record(obj) -> ObjectRecord:
    """Turn a simulator's object description into an :class:`ObjectRecord`.

    Introduced in lesson 04. Accepts an ``ObjectRecord``, a mapping or any object with the
    attributes ``name, colour (or color), shape, size, position`` and optionally ``kind``.
    """
    if isinstance(obj, ObjectRecord):
        return obj

    def get(key, *aliases):
        for k in (key, *aliases):
            if isinstance(obj, Mapping) and k in obj:
                return obj[k]
            if not isinstance(obj, Mapping) and hasattr(obj, k):
                return getattr(obj, k)
        raise ValueError(f"object record {obj!r} has no field {key!r}: expected name, colour, shape, size, position")

    return ObjectRecord(
        name=str(get("name")),
        colour=get("colour", "color"),
        shape=get("shape"),
        size=get("size"),
        position=get("position", "pos"),
        kind=str(obj.get("kind", "object") if isinstance(obj, Mapping) else getattr(obj, "kind", "object")),
    )


def size_word(size: str | float | None, small_below: float = DEFAULT_SMALL_BELOW) -> str:
    """The word for a size: a word stays, a half-extent in metres becomes small/large, None "".

    Introduced in lesson 04.
    """
    if size is None:
        return ""
    if isinstance(size, str):
        return size.strip().lower()
    return "small" if size < small_below else "large"


def describe_object(obj, small_below: float = DEFAULT_SMALL_BELOW) -> str:
    """``"small red cube"``: size, colour and shape of one object (no article).

    Introduced in lesson 04.
    """
    rec = as_record(obj)
    words = (size_word(rec.size, small_below), rec.colour.strip().lower(), rec.shape.strip().lower())
    return " ".join(w for w in words if w)


def spatial_relation(a, b, right_axis: Sequence[float] = (1.0, 0.0),
                     forward_axis: Sequence[float] = (0.0, 1.0)) -> str:
    """Where ``a`` is relative to ``b``: one of :data:`RELATIONS`.

    Introduced in lesson 04. The larger of the two displacements (along ``right_axis`` or
    along ``forward_axis``) decides; a tie goes to left/right.
    """
    pa, pb = as_record(a).position, as_record(b).position
    dx, dy = pa[0] - pb[0], pa[1] - pb[1]
    right = dx * right_axis[0] + dy * right_axis[1]
    forward = dx * forward_axis[0] + dy * forward_axis[1]
    if abs(right) >= abs(forward):
        return "right of" if right > 0 else "left of"
    return "behind" if forward > 0 else "in front of"


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def caption_scene(objects: Iterable, *, small_below: float = DEFAULT_SMALL_BELOW,
                  right_axis: Sequence[float] = (1.0, 0.0),
                  forward_axis: Sequence[float] = (0.0, 1.0)) -> str:
    """The caption of a scene from its object records, e.g. "a small red cube left of a blue bowl".

    Introduced in lesson 04.

    The first object is related to the second; any further objects are listed after
    ", and". Zero objects give ``"an empty table"``. Pure: the same records always give the
    same caption, in the order given.
    """
    records = [as_record(o) for o in objects]
    if not records:
        return "an empty table"
    phrases = [_article(describe_object(r, small_below)) for r in records]
    if len(records) == 1:
        return phrases[0]
    head = f"{phrases[0]} {spatial_relation(records[0], records[1], right_axis, forward_axis)} {phrases[1]}"
    if len(records) == 2:
        return head
    return head + ", and " + ", ".join(phrases[2:])


def build_caption_tokenizer(captions: Iterable[str], max_length: int = 32) -> Tokenizer:
    """A word-level tokenizer (``tokenizers`` library) over the words of ``captions``.

    Introduced in lesson 04.

    Ids: ``[PAD]=0, [UNK]=1, [EOS]=2``, then the words in sorted order, so the same set of
    captions always gives the same ids. Text is lower-cased and split on whitespace and
    punctuation; every encoding ends with ``[EOS]`` and is padded to ``max_length`` (SigLIP
    pads to a fixed length and pools the last position).
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (one word and [EOS]), got {max_length}")
    captions = list(captions)
    if not captions or not all(isinstance(c, str) for c in captions):
        raise ValueError("captions must be a non-empty list of strings")
    splitter = pre_tokenizers.Whitespace()
    words = set()
    for caption in captions:
        words.update(piece for piece, _ in splitter.pre_tokenize_str(caption.lower()))
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))])}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", special_tokens=[(EOS, vocab[EOS])])
    tokenizer.enable_padding(pad_id=vocab[PAD], pad_token=PAD, length=max_length)
    tokenizer.enable_truncation(max_length=max_length)
    return tokenizer


def encode_captions(tokenizer: Tokenizer, captions: Sequence[str]):
    """Token ids of ``captions`` as a ``torch.long`` tensor of shape (B, max_length).

    Introduced in lesson 04. A caption too long for the tokenizer's ``max_length`` is an
    error, never silently cut.
    """
    import torch

    if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
        raise ValueError("captions must be a list of strings")
    encodings = tokenizer.encode_batch(list(captions))
    for caption, enc in zip(captions, encodings):
        if enc.overflowing:
            length = tokenizer.truncation["max_length"] if tokenizer.truncation else "?"
            raise ValueError(f"caption longer than the tokenizer's max_length={length}: {caption!r}")
    return torch.tensor([enc.ids for enc in encodings], dtype=torch.long)
