"""Hugging Face loads are serialized: the text encoder loads in a background thread while the first chat turn loads
the policy's tokenizer, and transformers' lazy first use is not thread-safe (2 of 3 such starts failed before)."""

from __future__ import annotations

import threading

from recagent.hf_loading import HF_LOAD_LOCK


def _spy(monkeypatch, owner, name: str) -> list[bool]:
    """Wrap ``owner.name`` so each call records whether its thread holds HF_LOAD_LOCK (then runs the real one)."""
    real = getattr(owner, name)
    held: list[bool] = []

    def spied(*args, **kwargs):
        held.append(HF_LOAD_LOCK._is_owned())  # the C RLock's own ownership check
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spied)
    return held


def _in_a_thread(load) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            load()
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the load is still waiting after 60 s"
    assert not errors, errors


def test_the_policy_tokenizer_loads_holding_the_hf_lock(monkeypatch):
    import transformers

    from recagent.agents.local_model import find_default_gguf, load_tokenizer

    held = _spy(monkeypatch, transformers.AutoTokenizer, "from_pretrained")
    _in_a_thread(lambda: load_tokenizer(find_default_gguf()))
    assert held == [True]


def test_the_text_encoder_loads_holding_the_hf_lock_and_then_encodes_without_it(monkeypatch):
    import sentence_transformers

    from recagent.tools.index import TextEncoder

    held = _spy(monkeypatch, sentence_transformers, "SentenceTransformer")
    encoder = TextEncoder()
    _in_a_thread(lambda: encoder.encode(["a quiet film about a lighthouse keeper"]))
    assert held == [True]
    with HF_LOAD_LOCK:  # loaded once: encoding another text does not wait for a load in another thread
        _in_a_thread(lambda: encoder.encode(["a heist that goes wrong"]))
    assert held == [True]
