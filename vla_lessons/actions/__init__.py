"""Action tokenizers: how a language model writes robot actions as tokens.

Introduced in lessons 02 (``bins``: RT-2 and OpenVLA's 256 bins) and 03 (``fast``: DCT + BPE).
"""

from vla_lessons.actions.bins import (
    ACTION_DIM_NAMES,
    LAYOUTS,
    ActionTokenizer,
    QuantileNormalizer,
    UniformBinTokenizer,
    default_mask,
    roundtrip_error,
)
from vla_lessons.actions.fast import (
    FASTTokenizer,
    dct_coefficients,
    energy_compaction,
    dequantize,
    error_bound,
    fit_per_rate,
    inverse_dct,
    make_chunks,
    naive_token_count,
    quantize,
    reconstruction_error_vs_scale,
    smooth_action_chunks,
)

__all__ = [
    "ACTION_DIM_NAMES", "LAYOUTS", "ActionTokenizer", "QuantileNormalizer", "UniformBinTokenizer",
    "default_mask", "roundtrip_error",
    "FASTTokenizer", "dct_coefficients", "dequantize", "energy_compaction", "error_bound", "fit_per_rate",
    "inverse_dct", "make_chunks", "naive_token_count", "quantize", "reconstruction_error_vs_scale",
    "smooth_action_chunks",
]
