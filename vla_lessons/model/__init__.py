"""Models of the course: the mini OpenVLA-shaped VLA and the real OpenVLA-7B (``model.openvla``).

Introduced in lesson 05.

* :mod:`.text_tokenizer` -- the course's BPE tokenizer with byte fallback and 256 reserved ids
* :mod:`.vqa`            -- captions and questions about sim scenes (the web-data stand-in)
* :mod:`.vlm`            -- the mini Prismatic VLM (``PrismaticVLMConfig``, ``PrismaticVLM``), prompts
* :mod:`.train_vlm`      -- VLM pretraining (``train_vlm.train_vlm``), VQA accuracy, the ``vlm`` build target
* :mod:`.vla`            -- the mini VLA: action tokens, the state token, the wrist camera, action chunks
* :mod:`.action_head`    -- OpenVLA-OFT's continuous head (learned queries, an MLP, the L1 loss)
* :mod:`.openvla`, :mod:`.openvla_convert` -- the real OpenVLA-7B, offline
"""

from .text_tokenizer import load_text_tokenizer, reserved_ids, save_text_tokenizer, train_text_tokenizer
from .train_vlm import VLMRecipe, VLMStage, default_recipe, vqa_accuracy  # train_vlm(): see the module
from .vlm import (
    PrismaticVLM,
    PrismaticVLMConfig,
    build_prompt,
    build_vlm,
    encode_conversations,
    encode_examples,
    encode_prompts,
    load_vlm,
    parameter_counts,
    save_vlm,
)
from .vqa import VQAData, VQASample, vqa_dataset

__all__ = [
    "PrismaticVLM", "PrismaticVLMConfig", "VLMRecipe", "VLMStage", "VQAData", "VQASample", "build_prompt",
    "build_vlm", "default_recipe", "encode_conversations", "encode_examples", "encode_prompts",
    "load_text_tokenizer", "load_vlm", "parameter_counts", "reserved_ids", "save_text_tokenizer", "save_vlm",
    "train_text_tokenizer", "vqa_accuracy", "vqa_dataset",
]
