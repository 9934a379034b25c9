"""Seeing: OpenVLA's two vision encoders, their small pretraining, and their fusion.

Introduced in lesson 04.

Modules, in the order the lesson meets them:

* :mod:`.captions`     -- captions from a scene's ground truth; a word-level caption tokenizer
* :mod:`.data`         -- image datasets (synthetic shapes); :mod:`.sim_data` renders the tabletop
* :mod:`.pixels`       -- uint8 images -> normalised pixels for SigLIP / DINOv2
* :mod:`.augment`      -- crops, flips, colour jitter, in torch
* :mod:`.encoders`     -- small SigLIP / DINOv2 from the transformers classes; patch tokens; save/load
* :mod:`.siglip_train` -- the sigmoid loss and SigLIP pretraining
* :mod:`.dino_train`   -- self-distillation (DINO + iBOT) and DINOv2 pretraining
* :mod:`.fusion`       -- the fused backbone, the projectors, the real openvla-7b sizes
* :mod:`.probes`       -- linear probes of "what" and "where"
* :mod:`.build`        -- the build step: render, pretrain, save (``build_vision``)
"""

from .captions import ObjectRecord, build_caption_tokenizer, caption_scene, encode_captions
from .data import VisionData, load_vision_data, save_vision_data, synthetic_dataset
from .dino_train import DINOHead, DinoRecipe, dino_loss, pretrain_dino
from .encoders import (
    build_dino,
    build_siglip,
    load_dino,
    load_siglip,
    patch_tokens,
    save_dino,
    save_siglip,
    small_dino_config,
    small_siglip_config,
)
from .fusion import FusedBackbone, FusedProjector, MLPProjector, RealVisionParts, from_real_configs
from .pixels import preprocess, preprocess_fused
from .probes import (
    encoder_features,
    fit_linear_classifier,
    fit_linear_regressor,
    flattened,
    mean_pooled,
    probe_table,
    what_probe,
    where_probe,
)
from .siglip_train import SiglipRecipe, caption_probabilities, pretrain_siglip, retrieval_accuracy, sigmoid_loss
from .sim_data import sim_dataset

__all__ = [
    "DINOHead", "DinoRecipe", "FusedBackbone", "FusedProjector", "MLPProjector", "ObjectRecord",
    "RealVisionParts", "SiglipRecipe", "VisionData", "build_caption_tokenizer", "build_dino", "build_siglip",
    "caption_probabilities", "caption_scene", "dino_loss", "encode_captions", "encoder_features",
    "fit_linear_classifier", "fit_linear_regressor", "flattened", "from_real_configs", "load_dino",
    "load_siglip", "load_vision_data", "mean_pooled", "patch_tokens", "preprocess", "preprocess_fused",
    "pretrain_dino", "pretrain_siglip", "probe_table", "retrieval_accuracy", "save_dino", "save_siglip",
    "save_vision_data", "sigmoid_loss", "sim_dataset", "small_dino_config", "small_siglip_config",
    "synthetic_dataset", "what_probe", "where_probe",
]
