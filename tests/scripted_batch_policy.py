"""A scripted batch policy (token ids in, token ids out) for rollout tests, not the chat-model ScriptedPolicy of
recagent.agents.policies.scripted: fixed replies per episode, recognised across lock-step rounds."""

from __future__ import annotations


class ScriptedBatchPolicy:
    """Writes each episode's scripted replies, one per turn; an input no episode continues starts the next script.

    Episodes of one batch start from the same prompt, so they are told apart by the replies written so far: an
    input continues an episode if it begins with that episode's prompt and its first reply. Scripts are handed out
    in order and cycle, so a trainer that plays several batches gets the same pattern in each.
    """

    def __init__(self, tokenizer, scripts: list[list[str]]):
        eos = tokenizer.eos_token_id
        self.scripts = [[tokenizer(t, add_special_tokens=False)["input_ids"] + [eos] for t in s] for s in scripts]
        self.episodes: list[dict] = []  # prompt, script, turns written
        self.started = 0
        self.calls: list[int] = []  # batch size of every call

    def _episode(self, ids: list[int]) -> dict:
        for ep in reversed(self.episodes):  # the latest episode this input continues
            first = ep["prompt"] + ep["script"][0]
            if ep["turn"] > 0 and ids[: len(first)] == first:
                return ep
        ep = {"prompt": list(ids), "script": self.scripts[self.started % len(self.scripts)], "turn": 0}
        self.started += 1
        self.episodes.append(ep)
        return ep

    def __call__(self, inputs: list[list[int]]) -> list[list[int]]:
        self.calls.append(len(inputs))
        eps = [self._episode(ids) for ids in inputs]
        out = []
        for ep in eps:
            if ep["turn"] >= len(ep["script"]):
                raise AssertionError("the episode asked for more turns than its script has")
            out.append(ep["script"][ep["turn"]])
            ep["turn"] += 1
        return out
