"""Fine-tuning: the VLA training loop (lesson 06), LoRA and the fine-tuning strategies (lesson 07).

Introduced in lesson 06.

* :mod:`.finetune` -- robot steps as :class:`ActionFrames`, :func:`finetune_vla` with openvla's
  metrics (loss, action-token accuracy, L1), co-fine-tuning with VQA
* :mod:`.cofinetune` -- RT-2's co-fine-tuning measured: VQA ratio against held-out action accuracy
  and VQA retention (:func:`cofinetune_table`, ``data/results/cofinetune.json``)
* :mod:`.privileged` -- the ceiling with perfect perception: an MLP handed the simulator's ground
  truth, with a regression or a 256-bin head (``data/results/privileged.json``)
* :mod:`.localise` -- a localisation objective for the VLA's vision: "where is the X?" scenes, a
  training-only :class:`~.localise.LocalisationHead`, the loss :func:`finetune_vla` adds (``loc_batch``)
"""

from .finetune import (ActionFrames, FinetuneConfig, FinetuneResult, evaluate_actions, finetune_vla,
                       load_action_frames, vla_policy)

__all__ = ["ActionFrames", "FinetuneConfig", "FinetuneResult", "evaluate_actions", "finetune_vla",
           "load_action_frames", "vla_policy"]

from .cofinetune import build_cofinetune, cofinetune_table, load_cofinetune  # noqa: E402

__all__ += ["build_cofinetune", "cofinetune_table", "load_cofinetune"]

from .privileged import (PrivilegedConfig, PrivilegedPolicy, build_privileged, episode_features,  # noqa: E402
                         load_privileged, privileged_features, privileged_policy, train_privileged)

__all__ += ["PrivilegedConfig", "PrivilegedPolicy", "build_privileged", "episode_features", "load_privileged",
            "privileged_features", "privileged_policy", "train_privileged"]

from .localise import (LocalisationHead, WhereData, localisation_error, localisation_loss,  # noqa: E402
                       render_where, train_localisation)

__all__ += ["LocalisationHead", "WhereData", "localisation_error", "localisation_loss", "render_where",
            "train_localisation"]

# Lesson 07: LoRA by hand and with peft (:mod:`.lora`); the OpenVLA paper's fine-tuning strategies with
# measured memory (:mod:`.strategies`, ``data/results/strategies.json``).
from .lora import (LoRALinear, add_lora, compare_with_peft, linear_names, lora_summary, lora_vla,  # noqa: E402
                   merge_lora)
from .strategies import (ALL_STRATEGIES, STRATEGIES, build_strategies, load_strategies,  # noqa: E402
                         measure_training_memory, prepare, run_strategies)

__all__ += ["LoRALinear", "add_lora", "compare_with_peft", "linear_names", "lora_summary", "lora_vla", "merge_lora",
            "ALL_STRATEGIES", "STRATEGIES", "build_strategies", "load_strategies", "measure_training_memory",
            "prepare", "run_strategies"]
