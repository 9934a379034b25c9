"""The course map: every lesson, what it teaches and which module backs it.

Introduced in lesson 00. One list that lesson 00 draws and the tests check the README against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Lesson:
    """One lesson: its number, notebook stem, title, what it teaches, and the package modules."""

    number: int
    stem: str
    title: str
    teaches: str
    modules: tuple[str, ...]


LESSONS: tuple[Lesson, ...] = (
    Lesson(0, "00_orientation", "Orientation",
           "the VLA loop in one picture; the course map; an environment check", ("env", "course")),
    Lesson(1, "01_robot_data", "Robot data",
           "the simulated tabletop, language tasks, a scripted expert, episodes as a dataset, q01/q99",
           ("sim", "data")),
    Lesson(2, "02_action_bins", "Action bins",
           "RT-2 uniform bins vs OpenVLA's quantile-normalised 256 bins on the least-used ids",
           ("actions.bins",)),
    Lesson(3, "03_fast_tokens", "FAST tokens",
           "DCT of action chunks, scale and round, BPE; compression against control rate",
           ("actions.fast",)),
    Lesson(4, "04_vision_backbones", "Vision backbones",
           "SigLIP's sigmoid loss and DINO's self-distillation; 'what' vs 'where'; fusion", ("vision",)),
    Lesson(5, "05_prismatic_vlm", "A Prismatic VLM",
           "the fused projector, a small Llama, VLM pretraining on sim captions and questions", ("model",)),
    Lesson(6, "06_vlm_to_vla", "VLM to VLA",
           "prompt format, action tokens as labels, loss on action tokens only; co-fine-tuning",
           ("model", "train")),
    Lesson(7, "07_lora", "LoRA", "LoRA by hand, then peft; OpenVLA's fine-tuning strategies; the real 7B",
           ("train", "model.openvla")),
    Lesson(8, "08_quantized_inference", "Quantized inference",
           "int8/int4 weights: memory, latency, accuracy; success against inference rate", ("infer",)),
    Lesson(9, "09_faster_actions", "Faster actions",
           "KV cache, parallel decoding with action chunks (OFT), a flow-matching head (pi0)",
           ("infer", "model")),
    Lesson(10, "10_evaluation", "Evaluation",
           "rollouts over a task suite; success per generalization axis with error bars",
           ("deploy.evaluate",)),
    Lesson(11, "11_safety_and_serving", "Safety and serving",
           "workspace and rate limits, e-stop, out-of-distribution flags; a policy server",
           ("deploy.safety", "deploy.server")),
    Lesson(12, "12_hardware_rollouts", "Hardware rollouts",
           "one Robot interface; the simulated arm; a real SO-101 behind the same loop",
           ("deploy.robots",)),
)


def lesson(number: int) -> Lesson:
    """The lesson with this number; a clear error for an unknown one."""
    for item in LESSONS:
        if item.number == number:
            return item
    raise ValueError(f"no lesson {number!r}; the course has lessons 0 to {LESSONS[-1].number}")
