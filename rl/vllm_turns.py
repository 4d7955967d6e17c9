"""Policy turns from TRL's vLLM backend (``use_vllm``: colocated, or ``trl vllm-serve``) for the lock-step rollouts.

Written here because TRL's vLLM path generates one completion of up to ``max_completion_length``
tokens per prompt, while an episode is several shorter turns with tool results between them. Each
round of :func:`recagent.rl.rollout.run_episodes` therefore calls TRL's own
``VLLMGeneration.generate`` (its weight sync, server client, tensor-parallel gathering and sleep mode
stay TRL's) with the turn's token budget. In server mode, and with tensor parallelism, TRL gathers the
prompts of every process and hands each its slice by position, so every process must send as many
prompts in every round: with ``pad`` on, finished episodes keep their place with a one-token
placeholder prompt whose output is dropped, and the runner calls every round (``fixed_rounds``).
"""

from __future__ import annotations

from recagent.rl.rollout import Generated


class VLLMTurns:
    """A batch generator over TRL's ``VLLMGeneration``: one turn of at most ``max_turn_tokens`` per input, with log-probs."""

    def __init__(self, generation, max_turn_tokens: int, width: int, placeholder: int, pad: bool = False):
        self.generation, self.max_turn_tokens, self.width, self.placeholder, self.pad = (
            generation,
            max_turn_tokens,
            width,
            placeholder,
            pad,
        )

    def __call__(self, inputs: list[list[int]]) -> list[Generated]:
        if len(inputs) > self.width:
            raise RuntimeError(f"{len(inputs)} episodes in a round of width {self.width}")
        prompts = list(inputs) + ([[self.placeholder]] * (self.width - len(inputs)) if self.pad else [])
        if not prompts:
            return []
        budget = self.generation.max_completion_length
        self.generation.max_completion_length = self.max_turn_tokens  # TRL reads it per call: the turn's budget
        try:
            _, completions, logprobs, _ = self.generation.generate(prompts=prompts, images=None, num_generations=1)
        finally:
            self.generation.max_completion_length = budget
        # vLLM gives the top log-probs of each token, the sampled token's first
        return [
            Generated(list(completions[i]), [lp[0] for lp in logprobs[i]] if logprobs is not None else None)
            for i in range(len(inputs))
        ]
