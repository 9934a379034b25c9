"""Fine-tuning: the VLA training loop (lesson 06), LoRA and the fine-tuning strategies (lesson 07).

Introduced in lesson 06.

* :mod:`.finetune` -- robot steps as :class:`ActionFrames`, :func:`finetune_vla` with openvla's
  metrics (loss, action-token accuracy, L1), co-fine-tuning with VQA
"""

from .finetune import (ActionFrames, FinetuneConfig, FinetuneResult, evaluate_actions, finetune_vla,
                       load_action_frames, vla_policy)

__all__ = ["ActionFrames", "FinetuneConfig", "FinetuneResult", "evaluate_actions", "finetune_vla",
           "load_action_frames", "vla_policy"]
