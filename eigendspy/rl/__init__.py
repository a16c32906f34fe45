"""Verifiable-reward RL: SFT (agent and user model), multi-turn GRPO with dynamic filtering, rollout backends.

Nothing here is imported by ``import eigendspy``: the RL stack needs torch/transformers/trl (the
``train`` extra), and the data engine must work without them.
"""
