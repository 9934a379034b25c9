"""Running a policy on a robot: closed-loop evaluation (and, later, safety, serving, robots).

Introduced in lesson 06 (evaluation is lesson 10's subject).

* :mod:`.evaluate` -- seeded closed-loop rollouts in the simulator, success per task family
"""

from .evaluate import EpisodeResult, evaluate_expert, evaluate_policy, failure_table, rollout_batch, success_table

__all__ = ["EpisodeResult", "evaluate_expert", "evaluate_policy", "failure_table", "rollout_batch", "success_table"]
