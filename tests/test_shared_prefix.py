"""The shared-prefix SFT loss equals the plain loss, gradients included, while running the prefix once."""

from __future__ import annotations

import pytest
import torch

from recagent.rl.shared_prefix import (
    IGNORE,
    shared_prefix_length,
    shared_prefix_loss,
    tool_name_mask,
    tool_name_tokens,
)


def tiny_lora_llama(seed: int = 0):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    )
    model = get_peft_model(
        LlamaForCausalLM(cfg),
        LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False),
    )
    return model.train()


def batch_with_prefix(prefix: int = 12, lengths: tuple[int, ...] = (9, 15, 6)):
    """Right-padded rows sharing ``prefix`` tokens; labels on a few tokens of each row's own part."""
    g = torch.Generator().manual_seed(1)
    head = torch.randint(3, 97, (prefix,), generator=g)
    width = prefix + max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, IGNORE)
    for r, n in enumerate(lengths):
        ids[r, : prefix + n] = torch.cat([head, torch.randint(3, 97, (n,), generator=g)])
        mask[r, : prefix + n] = 1
        labels[r, prefix + 2 : prefix + n] = ids[r, prefix + 2 : prefix + n]  # an "assistant reply" after a user part
    return ids, mask, labels


def plain_loss(model, ids, mask, labels):
    """Every row whole, one at a time (no padding at all): the reference."""
    total, count = 0.0, 0
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        logits = model(input_ids=ids[r : r + 1, :n]).logits[0, :-1]
        target = labels[r, 1:n]
        keep = target != IGNORE
        total = total + torch.nn.functional.cross_entropy(logits[keep], target[keep], reduction="sum")
        count += int(keep.sum())
    return total / count


def grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_prefix_length_stops_at_the_first_difference_padding_or_label():
    ids, mask, labels = batch_with_prefix(prefix=12)
    assert shared_prefix_length(ids, labels, mask) == 12
    labels2 = labels.clone()
    labels2[1, 7] = ids[1, 7]  # a supervised token inside the common part: the prefix must end before it
    assert shared_prefix_length(ids, labels2, mask) == 7
    ids2 = ids.clone()
    ids2[2, 5] = (ids[2, 5] + 1) % 97
    assert shared_prefix_length(ids2, labels, mask) == 5


@pytest.mark.parametrize("prefix", [12, 0])
def test_loss_and_gradients_equal_the_plain_forward(prefix):
    ids, mask, labels = batch_with_prefix(prefix=prefix or 1, lengths=(9, 15, 6))
    if prefix == 0:  # rows that share nothing take the ordinary path
        ids[:, 0] = torch.tensor([5, 6, 7])
    model = tiny_lora_llama()
    ref = plain_loss(model, ids, mask, labels)
    ref.backward()
    want = grads(model)
    model.zero_grad()
    loss, p = shared_prefix_loss(model, ids, labels, mask)
    loss.backward()
    got = grads(model)
    assert p == prefix
    assert torch.allclose(loss, ref, atol=1e-5), (float(loss), float(ref))
    assert want and all(torch.allclose(got[n], want[n], atol=1e-5, rtol=1e-4) for n in want)
    # and LoRA's gradient really reached the layers that only the prefix feeds
    assert any(float(g.abs().sum()) > 0 for n, g in got.items() if "layers.0" in n)


def test_sampler_batches_rows_that_share_their_tool_block():
    from recagent.rl.shared_prefix import KEY_TOKENS, PrefixGroupedSampler

    blocks = {"a": [1] * KEY_TOKENS, "b": [2] * KEY_TOKENS}
    rows = [blocks["a"] + [9] * n for n in range(11)] + [blocks["b"] + [9] * n for n in range(6)]
    rows += [[3, n] + [0] * KEY_TOKENS for n in range(3)]  # three rows with tool blocks of their own
    sampler = PrefixGroupedSampler(rows, batch_size=4, seed=0)
    order = list(sampler)
    assert sorted(order) == list(range(len(rows))), "every row once"
    cut = [order[i : i + 4] for i in range(0, len(order), 4)]  # how the data loader batches the flat order
    pure = [c for c in cut if len({tuple(rows[i][:KEY_TOKENS]) for i in c}) == 1]
    assert len(pure) == 2 + 1, "all full batches of a group share its block (11 // 4 + 6 // 4)"
    assert all(len(c) == 4 for c in cut[:-1])
    assert list(PrefixGroupedSampler(rows, 4, seed=0)) == order, "seeded: a resumed run sees the same order"
    assert list(PrefixGroupedSampler(rows, 4, seed=1)) != order
    unsorted = list(PrefixGroupedSampler(rows, 4, seed=0, sort_by_length=False))
    assert sorted(unsorted) == sorted(order) and unsorted != order, "the same rows, not batched by length"
    banded = list(PrefixGroupedSampler(rows, 4, seed=0, sort_by_length=False, length_band=KEY_TOKENS + 4))
    cut = [banded[i : i + 4] for i in range(0, len(banded), 4)]
    short = [c for c in cut if all(rows[i][:KEY_TOKENS] == blocks["a"] and len(rows[i]) < KEY_TOKENS + 4 for i in c)]
    long = [c for c in cut if all(rows[i][:KEY_TOKENS] == blocks["a"] and len(rows[i]) >= KEY_TOKENS + 4 for i in c)]
    assert sorted(banded) == sorted(order) and len(short) == 1 and len(long) == 1, "block a: 4 short, 7 long rows"


def test_per_turn_loss_weighs_every_assistant_turn_equally():
    """per_turn: the mean over assistant turns of each turn's mean token loss, gradients included."""
    model = tiny_lora_llama()
    ids, mask, labels = batch_with_prefix(prefix=10, lengths=(14, 12))
    labels[0, 10 + 6 : 10 + 8] = IGNORE  # row 0: two turns (a gap of two unlabelled tokens), row 1: one turn
    loss, _ = shared_prefix_loss(model, ids, labels, mask, per_turn=True)
    loss.backward()
    got = grads(model)
    model.zero_grad()
    turns = []
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        token_loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids[r : r + 1, :n]).logits[0, :-1], labels[r, 1:n], ignore_index=IGNORE, reduction="none"
        )
        keep = (labels[r, 1:n] != IGNORE).tolist()
        spans, start = [], None
        for t, k in enumerate(keep + [False]):
            if k and start is None:
                start = t
            elif not k and start is not None:
                spans.append((start, t))
                start = None
        turns += [token_loss[a:b].mean() for a, b in spans]
    assert len(turns) == 3
    reference = torch.stack(turns).mean()
    reference.backward()
    assert torch.allclose(loss, reference, atol=1e-5)
    assert all(torch.allclose(got[k], p.grad, atol=1e-5) for k, p in model.named_parameters() if p.requires_grad)
    # and it is not the token mean: the short turn counts as much as the long one
    assert not torch.allclose(loss, shared_prefix_loss(model, ids, labels, mask)[0], atol=1e-4)


def test_first_token_weight_adds_each_turns_first_token_loss():
    """first_token_weight: each turn's loss + weight x its first token's loss (the call-or-words decision)."""
    model = tiny_lora_llama()
    ids, mask, labels = batch_with_prefix(prefix=10, lengths=(14, 12))
    labels[0, 10 + 6 : 10 + 8] = IGNORE  # row 0: two turns, row 1: one turn
    plain, _ = shared_prefix_loss(model, ids, labels, mask, per_turn=True)
    weighted, _ = shared_prefix_loss(model, ids, labels, mask, per_turn=True, first_token_weight=2.0)
    firsts = []
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        token_loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids[r : r + 1, :n]).logits[0, :-1], labels[r, 1:n], ignore_index=IGNORE, reduction="none"
        )
        keep = (labels[r, 1:n] != IGNORE).tolist()
        firsts += [token_loss[t] for t, k in enumerate(keep) if k and (t == 0 or not keep[t - 1])]
    assert len(firsts) == 3
    assert torch.allclose(weighted, plain + 2.0 * torch.stack(firsts).mean(), atol=1e-5)
    with pytest.raises(ValueError, match="per_turn"):
        shared_prefix_loss(model, ids, labels, mask, first_token_weight=1.0)


def test_name_token_weight_adds_each_turns_summed_name_token_loss():
    """name_token_weight: each turn's loss + weight x the summed loss of its tool-name tokens (the tool choice)."""
    model = tiny_lora_llama()
    ids, mask, labels = batch_with_prefix(prefix=10, lengths=(14, 12))
    labels[0, 10 + 6 : 10 + 8] = IGNORE  # row 0: two turns, row 1: one turn
    names = torch.zeros_like(ids, dtype=torch.bool)
    names[0, 10 + 3 : 10 + 5] = True  # two name tokens in row 0's first turn, one in row 1's turn, none in the third
    names[1, 10 + 9] = True
    plain, _ = shared_prefix_loss(model, ids, labels, mask, per_turn=True)
    weighted, _ = shared_prefix_loss(model, ids, labels, mask, per_turn=True, name_mask=names, name_token_weight=3.0)
    name_losses = []
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        token_loss = torch.nn.functional.cross_entropy(
            model(input_ids=ids[r : r + 1, :n]).logits[0, :-1], labels[r, 1:n], ignore_index=IGNORE, reduction="none"
        )
        name_losses += [token_loss[t - 1] for t in range(1, n) if names[r, t]]  # position t-1 predicts token t
    assert len(name_losses) == 3
    assert torch.allclose(weighted, plain + 3.0 * torch.stack(name_losses).sum() / 3, atol=1e-5)  # 3 turns
    with pytest.raises(ValueError, match="name_mask"):
        shared_prefix_loss(model, ids, labels, mask, per_turn=True, name_token_weight=1.0)
    with pytest.raises(ValueError, match="per_turn"):
        shared_prefix_loss(model, ids, labels, mask, name_mask=names, name_token_weight=1.0)


def test_tool_name_mask_marks_exactly_the_names_of_rendered_calls(smollm2_tokenizer):
    """On SmolLM2's tokens, the mask covers each call's tool name and nothing of its arguments or of words."""
    from recagent.agents.prompt_format import render_tool_call

    text = (
        "I can do that. The name of it: rank_items.\n"
        + render_tool_call("rank_by_preference", {"user_id": "7", "name": "get_item"})
        + "\n"
        + render_tool_call("get_item", {"title": "Heat"})
    )
    ids = torch.tensor([smollm2_tokenizer.encode(text, add_special_tokens=False)])
    mask = tool_name_mask(ids, *tool_name_tokens(smollm2_tokenizer))
    assert smollm2_tokenizer.decode(ids[0, mask[0]]) == "rank_by_preferenceget_item"
