"""The course's text tokenizer: a small Llama-style BPE with byte fallback and a reserved id block.

Introduced in lesson 05 (the VLM reads it), used again in lesson 06 (its last 256 ids become
action tokens).

Llama-2's tokenizer is a SentencePiece BPE with 32,000 ids and *byte fallback*: a character it
has no piece for is written as its UTF-8 bytes (``<0xC3> <0xA9>`` for "é"), so no text is ever
unknown. OpenVLA overwrites its 256 least-used ids (31,744-31,999) with action bins. A 32k
vocabulary would dominate the cost of a model this small (``MEASURED.md``), so the course trains
its own, with the ``tokenizers`` library, on its own text: the *train* phrasings of the robot
instructions (inside OpenVLA's prompt), scene captions and the VQA questions and answers.
Held-out phrasings ("could you lift up the red cube") are not in that corpus on purpose; they
still tokenize, into shorter pieces, single characters or bytes.

The id layout (for the default ``vocab_size=1024``)::

    0 <unk>   1 <s>   2 </s>   3 <pad>          special tokens (<unk> is never produced: byte fallback)
    4 .. 259         <0x00> .. <0xFF>           the 256 byte-fallback tokens
    260 .. 767       characters and BPE merges  what text becomes ("text ids")
    768 .. 1023      <reserved_000> .. <reserved_255>
                                                never produced from text: lesson 06's action tokens

The reserved block is the *last* ``N_RESERVED = 256`` ids, exactly where OpenVLA's action ids
sit (bin ``k`` -> id ``vocab_size - k``), so :class:`vla_lessons.actions.bins.ActionTokenizer`
works with ``vocab_size=len(tokenizer)``. The reserved tokens are entries of the BPE vocabulary
that no merge produces and that are *not* "added tokens", so even the literal text
``"<reserved_000>"`` is split into ordinary pieces: the text tokenizer can never emit them.
If the corpus supports fewer merges than asked for, ``<unused_i>`` fillers (also never produced)
keep the layout above exact.

The tokenizer is wrapped in a ``transformers.PreTrainedTokenizerFast`` (the class learners meet
with real models) and saved with ``save_pretrained`` (``tokenizer.json`` + ``tokenizer_config.json``).
Text is case-sensitive, like Llama's; the course lower-cases instructions and questions in its
prompt builders, as OpenVLA does.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

#: Special tokens in id order (Llama-2's first three, then padding).
UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
SPECIAL_TOKENS = (UNK, BOS, EOS, PAD)
#: The 256 byte-fallback tokens, ids 4..259.
BYTE_TOKENS = tuple(f"<0x{b:02X}>" for b in range(256))
#: Size of the reserved block at the end of the vocabulary (OpenVLA's 256 action bins).
N_RESERVED = 256
#: Default total vocabulary: 768 text ids + 256 reserved ids (a multiple of 64, as openvla pads).
DEFAULT_VOCAB_SIZE = 1024
#: Characters every tokenizer knows as single pieces, whatever the corpus (printable ASCII + newline).
BASE_ALPHABET = tuple(sorted(set(string.printable) - set("\t\r\x0b\x0c ")))
#: The word-start marker of SentencePiece/Llama (a space becomes "▁").
SPACE = "\u2581"


def reserved_token(i: int) -> str:
    """The name of reserved token ``i`` (0..255): ``"<reserved_000>"``. Introduced in lesson 05."""
    return f"<reserved_{i:03d}>"


def _backend(vocab: dict[str, int], merges: list) -> Tokenizer:
    """A Llama-style BPE ``Tokenizer`` over ``vocab`` and ``merges`` (no training)."""
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK, byte_fallback=True))
    tok.normalizer = normalizers.NFC()
    # Words start with "▁" (Llama); punctuation and digits are pieces of their own, so "cube?" and
    # "cube" share the piece "▁cube" and a count like "12" is two digits (Llama-2 splits digits).
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="first", split=True),
        pre_tokenizers.Split(Regex(r"[^\w\u2581]"), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
    ])
    tok.decoder = decoders.Sequence([decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B",
                                                       special_tokens=[(BOS, vocab[BOS])])
    return tok


def train_text_tokenizer(corpus: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE,
                         n_reserved: int = N_RESERVED, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train the course's BPE tokenizer on ``corpus`` and reserve the last ``n_reserved`` ids.

    Introduced in lesson 05.

    Args:
        corpus: the training texts (strings). Deterministic: the same corpus gives the same ids.
        vocab_size: total number of ids, reserved block included (``len(tokenizer)``).
        n_reserved: size of the reserved block at the end (256 for OpenVLA's action bins).
        min_frequency: a pair must occur this often to become a merge.

    Returns a ``PreTrainedTokenizerFast`` that adds ``<s>`` in front (Llama's convention) and
    pads with ``<pad>``. Layout: see the module docstring; :func:`reserved_ids` gives the block.
    """
    texts = [corpus] if isinstance(corpus, str) else list(corpus)
    if not texts or not all(isinstance(t, str) for t in texts) or not any(t.strip() for t in texts):
        raise ValueError("corpus must be a non-empty list of strings with some text")
    if isinstance(n_reserved, bool) or not isinstance(n_reserved, int) or n_reserved < 0:
        raise ValueError(f"n_reserved must be a non-negative int, got {n_reserved!r}")
    fixed = len(SPECIAL_TOKENS) + len(BYTE_TOKENS) + len(BASE_ALPHABET) + 1  # +1 for the lone "▁"
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < fixed + n_reserved:
        raise ValueError(f"vocab_size must be an int >= {fixed + n_reserved} ({fixed} special, byte and "
                         f"character ids + {n_reserved} reserved), got {vocab_size!r}")
    text_size = vocab_size - n_reserved
    trainer = trainers.BpeTrainer(vocab_size=text_size, min_frequency=min_frequency,
                                  special_tokens=[*SPECIAL_TOKENS, *BYTE_TOKENS],
                                  initial_alphabet=[*BASE_ALPHABET, SPACE], show_progress=False)
    draft = _backend({t: i for i, t in enumerate(SPECIAL_TOKENS)}, [])
    draft.train_from_iterator(texts, trainer)
    model = draft.get_vocab(with_added_tokens=True)
    vocab = dict(sorted(model.items(), key=lambda kv: kv[1]))
    merges = _merges_of(draft)
    if list(vocab)[: len(SPECIAL_TOKENS) + len(BYTE_TOKENS)] != [*SPECIAL_TOKENS, *BYTE_TOKENS]:
        raise RuntimeError("the BPE trainer did not keep the special and byte tokens first")  # tokenizers changed
    fillers = [f"<unused_{i}>" for i in range(text_size - len(vocab))]
    for token in [*fillers, *(reserved_token(i) for i in range(n_reserved))]:
        vocab[token] = len(vocab)
    return wrap(_backend(vocab, merges))


def _merges_of(tok: Tokenizer) -> list[tuple[str, str]]:
    import json

    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wrap a backend ``Tokenizer`` as ``PreTrainedTokenizerFast`` with Llama's special tokens.

    Introduced in lesson 05. Only ``<unk> <s> </s> <pad>`` become "added" (special) tokens;
    byte and reserved tokens stay plain vocabulary entries.
    """
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                   pad_token=PAD, padding_side="right", model_input_names=["input_ids",
                                                                                            "attention_mask"])
    check_layout(fast)
    return fast


def reserved_ids(tokenizer, n_reserved: int = N_RESERVED) -> range:
    """The reserved block: ``range(len(tokenizer) - n_reserved, len(tokenizer))``.

    Introduced in lesson 05. Raises ``ValueError`` if the tokenizer's last ids are not the
    reserved tokens (a tokenizer that was not made by :func:`train_text_tokenizer`).
    """
    check_layout(tokenizer, n_reserved)
    total = len(tokenizer)
    return range(total - n_reserved, total)


def text_vocab_size(tokenizer, n_reserved: int = N_RESERVED) -> int:
    """Number of ids text can map to: everything below the reserved block. Introduced in lesson 05."""
    return reserved_ids(tokenizer, n_reserved).start


def check_layout(tokenizer, n_reserved: int = N_RESERVED) -> None:
    """Raise ``ValueError`` unless ids 0-3 are the special tokens and the last ``n_reserved`` are reserved.

    Introduced in lesson 05.
    """
    total = len(tokenizer)
    if total < n_reserved + len(SPECIAL_TOKENS):
        raise ValueError(f"tokenizer has {total} ids, too few for {n_reserved} reserved ids")
    head = tokenizer.convert_ids_to_tokens(list(range(len(SPECIAL_TOKENS))))
    if tuple(head) != SPECIAL_TOKENS:
        raise ValueError(f"ids 0-3 must be {SPECIAL_TOKENS}, got {tuple(head)}")
    tail = tokenizer.convert_ids_to_tokens(list(range(total - n_reserved, total)))
    expected = [reserved_token(i) for i in range(n_reserved)]
    if tail != expected:
        raise ValueError(f"the last {n_reserved} ids must be <reserved_000>..<reserved_{n_reserved - 1:03d}>; "
                         "build the tokenizer with train_text_tokenizer")


def save_text_tokenizer(tokenizer: PreTrainedTokenizerFast, path) -> Path:
    """``save_pretrained`` the tokenizer into folder ``path`` (tokenizer.json + config). Introduced in lesson 05."""
    check_layout(tokenizer)
    path = Path(path)
    tokenizer.save_pretrained(path)
    return path


def load_text_tokenizer(path) -> PreTrainedTokenizerFast:
    """Load what :func:`save_text_tokenizer` saved and check its layout. Introduced in lesson 05."""
    path = Path(path)
    if not (path / "tokenizer.json").is_file():
        raise ValueError(f"no tokenizer at {path} (tokenizer.json missing)")
    return wrap(Tokenizer.from_file(str(path / "tokenizer.json")))
