"""SFT that computes a batch's shared prompt prefix once: the CPU recipe's loss (``shared_prefix: true``).

Why: on the 2-core CPUs the policy is trained on, every synthesized dialog starts with the same
~680-token tool block (the default ten tools) and the system turn, i.e. about 60% of a
~1,200-token training dialog, and TRL's ``SFTTrainer`` runs that prefix forward and backward once
per dialog. :class:`SharedPrefixSFTTrainer` is TRL's trainer (data, collator, schedule,
checkpoints, resume, logging are TRL's and transformers') with one change, the loss: it finds the
longest token prefix that every row of the batch shares and that carries no loss, runs it once
(with gradients: LoRA changes its keys and values), repeats its KV cache over the batch, runs the
rows' remaining tokens on top of it, and applies the output head only at the positions that carry a
loss (the 49k-word head is a fifth of the model's weights; assistant tokens are ~15% of a dialog).
The result is the same loss and the same gradients as running each row whole
(``tests/test_shared_prefix.py`` checks both against the plain forward); only the work differs.
With ``per_device_train_batch_size`` rows per batch the prefix costs 1/B of its per-row price.

No library does this: TRL's ``padding_free``/packing shares no computation between rows, and
prefix caching exists in inference engines only.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from typing import Any

import torch
from trl import SFTTrainer

IGNORE = -100  # the label of a position that carries no loss (transformers' convention)
KEY_TOKENS = 512  # rows whose first 512 tokens agree share their tool block (the ten tools take ~680)


def shared_prefix_length(input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> int:
    """Tokens at the start that every row has, equal, unpadded, and without a loss on the token they predict."""
    same = (input_ids == input_ids[:1]).all(dim=0)
    if attention_mask is not None:
        same &= attention_mask.bool().all(dim=0)
    # position t predicts token t+1, so the prefix [0, P) must leave labels[:, 1:P] unsupervised
    quiet = (labels == IGNORE).all(dim=0)
    n = int(torch.cumprod(same.int(), dim=0).sum())
    while n > 1 and not bool(quiet[1:n].all()):
        n -= 1
    # the suffix must keep at least one token so that every row has something to predict from
    return max(0, min(n, input_ids.shape[1] - 1))


def _causal_lm(model: Any) -> Any:
    """The transformers causal LM inside a peft wrapper (LoRA layers are injected in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def turn_ids(keep: torch.Tensor) -> torch.Tensor:
    """For the True positions of ``keep`` (rows x positions), row-major: which turn (contiguous run) each is in."""
    before = torch.nn.functional.pad(keep[:, :-1], (1, 0), value=False)
    starts = keep & ~before  # a labelled position whose left neighbour is not: a new assistant turn
    return torch.cumsum(starts.flatten().long(), 0)[keep.flatten()] - 1


def shared_prefix_loss(
    model: Any,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    num_items_in_batch: int | torch.Tensor | None = None,
    per_turn: bool = False,
    first_token_weight: float = 0.0,
    name_mask: torch.Tensor | None = None,
    name_token_weight: float = 0.0,
) -> tuple[torch.Tensor, int]:
    """Next-token loss over the labelled positions, with the shared prefix run once; returns (loss, prefix length).

    ``per_turn``: the mean of each assistant turn's mean token loss, so a ten-token call weighs as much
    as a 200-token answer (else the mean over tokens, ``num_items_in_batch`` of them when given).
    ``first_token_weight`` (with ``per_turn``): each turn's loss also adds this weight times the loss of its
    first token, the one that decides between a call and words (within a turn's mean it is one of ~30).
    ``name_token_weight`` (with ``per_turn`` and ``name_mask``, True at the tokens of tool names, see
    :func:`tool_name_mask`): each turn's loss also adds this weight times the summed loss of its tool-name tokens,
    the ones that choose the tool (a name's later tokens are nearly free once its first is chosen).
    """
    if (first_token_weight or name_token_weight) and not per_turn:
        raise ValueError("first_token_weight and name_token_weight weigh tokens of a turn: they need per_turn=True")
    if name_token_weight and name_mask is None:
        raise ValueError("name_token_weight needs name_mask: which tokens are tool names")
    lm = _causal_lm(model)
    decoder, head = lm.model, lm.get_output_embeddings()
    batch, length = input_ids.shape
    mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
    p = shared_prefix_length(input_ids, labels, attention_mask) if batch > 1 else 0
    cache = None
    hidden_parts = []
    if p > 0:
        out = decoder(input_ids=input_ids[:1, :p], use_cache=True)
        cache = out.cache
        if batch > 1:
            cache.batch_repeat_interleave(batch)  # differentiable: every row's gradient reaches the prefix
        hidden_parts.append(out.last_hidden_state.expand(batch, -1, -1))
    positions = torch.arange(p, length, device=input_ids.device).unsqueeze(0).expand(batch, -1)
    out = decoder(
        input_ids=input_ids[:, p:],
        attention_mask=mask,
        cache=cache,
        position_ids=positions,
        use_cache=cache is not None,
    )
    hidden_parts.append(out.last_hidden_state)
    hidden = torch.cat(hidden_parts, dim=1) if len(hidden_parts) > 1 else hidden_parts[0]
    target = labels[:, 1:]
    keep = target != IGNORE
    logits = head(hidden[:, :-1][keep]).float()  # the head only where a token is predicted
    if per_turn:
        token_loss = torch.nn.functional.cross_entropy(logits, target[keep], reduction="none")
        turn = turn_ids(keep)
        n_turns = int(turn[-1]) + 1 if turn.numel() else 1
        sums = torch.zeros(n_turns, dtype=token_loss.dtype, device=token_loss.device).index_add(0, turn, token_loss)
        counts = torch.bincount(turn, minlength=n_turns).clamp(min=1).to(token_loss.dtype)
        turn_loss = sums / counts
        if first_token_weight:
            first = torch.ones_like(turn, dtype=torch.bool)
            first[1:] = turn[1:] != turn[:-1]  # turn ids rise along the flattened labelled positions
            turn_loss = turn_loss + first_token_weight * token_loss[first]
        if name_token_weight:
            names = name_mask[:, 1:][keep]  # position t predicts token t+1: the mask of the predicted tokens
            name_sums = torch.zeros_like(turn_loss).index_add(0, turn[names], token_loss[names])
            turn_loss = turn_loss + name_token_weight * name_sums
        return turn_loss.mean(), p
    loss_sum = torch.nn.functional.cross_entropy(logits, target[keep], reduction="sum")
    n = num_items_in_batch if num_items_in_batch is not None else keep.sum()
    return loss_sum / torch.as_tensor(n, dtype=loss_sum.dtype, device=loss_sum.device).clamp(min=1), p


def tool_name_mask(input_ids: torch.Tensor, opener: list[int], quote_ids: set[int]) -> torch.Tensor:
    """True at the tokens of each tool name in ``input_ids``: those after ``opener`` (the tokens of a call's
    start up to its name, ``<tool_call>{"name": "``) up to the first token that holds a quote."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    n = len(opener)
    for r, row in enumerate(input_ids.tolist()):
        for i in range(len(row) - n):
            if row[i : i + n] == opener:
                j = i + n
                while j < len(row) and row[j] not in quote_ids:
                    mask[r, j] = True
                    j += 1
    return mask


def tool_name_tokens(tokenizer: Any) -> tuple[list[int], set[int]]:
    """The tokens that open a call up to its tool name, and every token that holds a quote (ends a name)."""
    from recagent.agents.prompt_format import tool_call_prefix

    opener = tool_call_prefix("NAME").split("NAME")[0]  # the renderer's and the grammar's own call start
    quotes = {i for i in range(len(tokenizer)) if '"' in tokenizer.decode([i])}
    return tokenizer.encode(opener, add_special_tokens=False), quotes


def block_keys(input_ids: list[list[int]]) -> list[str]:
    """One key per row: rows with equal keys start with the same :data:`KEY_TOKENS` tokens (their tool block)."""
    return [hashlib.sha1(str(ids[:KEY_TOKENS]).encode()).hexdigest() for ids in input_ids]


class PrefixGroupedSampler(torch.utils.data.Sampler):
    """Row indices in batches of rows that share their first tokens (their tool block), the batches shuffled.

    A random batch of four synthesized dialogs rarely shows one tool block four times (tool variants
    and distractors vary it), so the shared prefix would be little more than the chat header. Rows
    are grouped by their first :data:`KEY_TOKENS` tokens; within a group, rows of similar length go
    together (sorted within seeded chunks of 16 batches: less padding) unless ``sort_by_length`` is false,
    then rows go together at random, within bands of ``length_band`` tokens when it is set (a batch pads
    to its longest row); then all batches are shuffled.
    The order depends on the seed only, so a resumed run skips exactly the batches it has seen.
    """

    def __init__(
        self, input_ids: list[list[int]], batch_size: int, seed: int, sort_by_length: bool = True, length_band: int = 0
    ):
        self.batch_size, self.seed, self.sort_by_length = batch_size, seed, sort_by_length
        self.lengths = [len(ids) for ids in input_ids]
        self.keys = block_keys(input_ids)
        if length_band and not sort_by_length:  # a row's group: its tool block and its length band
            self.keys = [f"{k}:{n // length_band:06d}" for k, n in zip(self.keys, self.lengths)]

    def __len__(self) -> int:
        return len(self.keys)

    def batches(self) -> list[list[int]]:
        """The seeded batches, each of rows with one key."""
        rng = random.Random(self.seed)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, key in enumerate(self.keys):
            groups[key].append(i)
        b = self.batch_size
        batches, leftovers = [], []
        for key in sorted(groups):
            rows = groups[key]
            rng.shuffle(rows)
            full = len(rows) - len(rows) % b
            leftovers += rows[full:]  # too few to fill a batch of their own
            for start in range(0, full, b * 16):
                part = rows[start : min(start + b * 16, full)]
                if self.sort_by_length:  # less padding; but rows of one length are often one kind of turn
                    part = sorted(part, key=self.lengths.__getitem__)
                batches += [part[j : j + b] for j in range(0, len(part), b)]
        mixed = [leftovers[j : j + b] for j in range(0, len(leftovers), b)]
        last = [mixed.pop()] if mixed and len(mixed[-1]) < b else []
        batches += mixed
        rng.shuffle(batches)
        # the data loader cuts the flat order every b indices: only the very last batch may be short
        return batches + last

    def __iter__(self):
        return iter([i for batch in self.batches() for i in batch])


class SharedPrefixSFTTrainer(SFTTrainer):
    """TRL's ``SFTTrainer`` whose training loss runs a batch's shared prefix once (see the module docstring)."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        return PrefixGroupedSampler(
            dataset["input_ids"],
            self.args.per_device_train_batch_size,
            self.args.seed,
            sort_by_length=getattr(self.args, "length_sorted_batches", True),
            length_band=getattr(self.args, "length_band", 0),
        )

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs or not model.training:  # evaluation and metrics: TRL's own path
            return super().compute_loss(
                model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch
            )
        per_turn = getattr(self.args, "loss_per", "token") == "turn"
        name_weight = getattr(self.args, "name_token_weight", 0.0)
        names = None
        if name_weight:
            if not hasattr(self, "_name_tokens"):
                self._name_tokens = tool_name_tokens(self.processing_class)
            names = tool_name_mask(inputs["input_ids"], *self._name_tokens)
        loss, prefix = shared_prefix_loss(
            model,
            inputs["input_ids"],
            inputs["labels"],
            inputs.get("attention_mask"),
            num_items_in_batch,
            per_turn=per_turn,
            first_token_weight=getattr(self.args, "first_token_weight", 0.0),
            name_mask=names,
            name_token_weight=name_weight,
        )
        self._prefix_tokens = getattr(self, "_prefix_tokens", 0) + prefix
        if per_turn and self._trainer_skips_ga_division(num_items_in_batch):
            # a per-batch mean; the Trainer divides by the accumulation steps only when it thinks the loss is not
            # already normalised over the whole accumulated batch (by num_items_in_batch), so do it here then
            loss = loss / getattr(self, "current_gradient_accumulation_steps", self.args.gradient_accumulation_steps)
        return loss

    def _trainer_skips_ga_division(self, num_items_in_batch) -> bool:
        """transformers' own test (Trainer.training_step) for a loss already scaled for gradient accumulation."""
        if getattr(self, "loss_is_scaled_for_ga", None) is not None:
            return bool(self.loss_is_scaled_for_ga)
        return bool(
            (self.model_accepts_loss_kwargs and num_items_in_batch is not None) or self.compute_loss_func is not None
        )
