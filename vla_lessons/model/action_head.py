"""OpenVLA-OFT's continuous action head: parallel decoding of a chunk with an L1-trained MLP.

Introduced in lesson 06 (measured in the README); lesson 09 (faster actions) takes it apart.

OpenVLA answers with 7 action tokens, one at a time, each an argmax over 256 bins. OpenVLA-OFT
(Kim, Finn & Liang, 2025, "Fine-Tuning Vision-Language-Action Models: Optimizing Speed and
Success") changes three things, and this module holds the two that add weights:

* **parallel decoding** -- after the prompt the Llama reads ``K`` extra input positions (here one
  learned query embedding per future step, :class:`ActionQueries`; OFT feeds empty embeddings)
  and all K outputs come from that single forward pass: no token-by-token loop, no KV cache;
* **a continuous head** -- an MLP (:class:`L1RegressionHead`) maps each query's last hidden state
  to 7 numbers in the normalised [-1, 1] space of lesson 02, trained with the L1 loss against the
  normalised expert actions; un-normalising them needs no bins;
* **action chunks** -- the K queries are the next K actions (``config.chunk_size``), executed
  before the robot asks again (:mod:`vla_lessons.deploy.evaluate`).

Two departures from OFT, both for the laptop: one position per future step instead of one per
action number (7x fewer extra positions), and the Llama's causal mask is kept (OFT makes the
action positions attend to each other both ways); a query still sees the whole prompt, images
and state.
"""

from __future__ import annotations

import torch

#: The action heads a :class:`~vla_lessons.model.vla.PrismaticVLA` can have.
ACTION_HEADS = ("tokens", "l1")


class ActionQueries(torch.nn.Module):
    """K learned input embeddings, one per action of the chunk: ``forward(batch)`` -> (B, K, D).

    Introduced in lesson 06. Initialised like token embeddings (std 0.02), so before training
    they are just K more unknown words.
    """

    def __init__(self, chunk_size: int, hidden: int):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(chunk_size, hidden) * 0.02)

    def forward(self, batch: int) -> torch.Tensor:
        return self.weight[None].expand(batch, -1, -1)


class L1RegressionHead(torch.nn.Module):
    """Last hidden states (B, K, D) -> normalised actions (B, K, action_dim): LayerNorm, MLP (OFT's).

    Introduced in lesson 06. The output is unbounded; the VLA clips it to [-1, 1] before it
    un-normalises (the range the q01/q99 normalisation maps the training actions into).
    """

    def __init__(self, hidden: int, action_dim: int):
        super().__init__()
        self.norm = torch.nn.LayerNorm(hidden)
        self.fc1 = torch.nn.Linear(hidden, 2 * hidden)
        self.act = torch.nn.GELU()
        self.fc2 = torch.nn.Linear(2 * hidden, action_dim)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(self.norm(hidden_states))))
