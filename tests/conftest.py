"""Shared fixtures: synthetic data for fast unit tests, the real ML-100K for integration tests.

Integration tests read ML-100K from the cache that the README's install command filled
(``recagent data fetch ml-100k``); they never touch the network. Everything a test writes
goes to a temporary RECAGENT_HOME.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from recagent import paths
from recagent.tools.data import leave_one_out, load_dataset
from recagent.tools.data.synthetic import make_synthetic


@pytest.fixture(scope="session")
def real_ml100k_dir() -> Path:
    """Folder of the fetched ML-100K (resolved before any test changes RECAGENT_HOME)."""
    path = paths.dataset_dir("ml-100k")
    if not (path / "manifest.json").is_file():
        pytest.fail(f"ML-100K is not in {path}: run the README install command (it runs `recagent data fetch ml-100k`)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test writes artifacts under its own temporary RECAGENT_HOME.

    Session fixtures (the real dataset folder) are set up before this one, so they still
    see the user's cache.
    """
    monkeypatch.setenv("RECAGENT_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="session")
def synthetic():
    """A small synthetic dataset with learnable structure."""
    return make_synthetic(n_users=120, n_items=60, seed=0)


@pytest.fixture(scope="session")
def synthetic_split(synthetic):
    """Its leave-one-out split."""
    return leave_one_out(synthetic)


@pytest.fixture(scope="session")
def synthetic_env(synthetic, synthetic_split):
    """A tool environment over the synthetic data with all four models (briefly trained)."""
    from recagent.tools.env import ToolEnv, ToolEnvConfig
    from recagent.tools.recommenders import MODELS

    models = {}
    for name, cls in MODELS.items():
        m = cls(cls.config_cls(**({"max_epochs": 3} if name in ("bpr", "sasrec") else {})))
        m.fit(synthetic_split, show_progress=False)
        models[name] = m
    return ToolEnv(synthetic, synthetic_split, models, ToolEnvConfig(dataset="synthetic"))


@pytest.fixture()
def dataset_dir(synthetic, synthetic_split, tmp_path):
    """The synthetic dataset as atomic files, with briefly trained models in the temporary RECAGENT_HOME."""
    from recagent.paths import model_dir
    from recagent.tools.data.synthetic import write_atomic
    from recagent.tools.recommenders import train

    folder = write_atomic(synthetic, tmp_path / "synthetic")
    for name in ("pop", "itemknn", "bpr", "sasrec"):
        train(
            synthetic_split,
            name,
            {"max_epochs": 2} if name in ("bpr", "sasrec") else {},
            out_dir=model_dir("synthetic", name),
            show_progress=False,
        )
    return str(folder)


@pytest.fixture(scope="session")
def ml100k(real_ml100k_dir):
    """The real ML-100K dataset."""
    return load_dataset(real_ml100k_dir)


@pytest.fixture(scope="session")
def ml100k_split(ml100k):
    """ML-100K, leave-one-out by time."""
    return leave_one_out(ml100k)


@pytest.fixture(scope="session")
def ml100k_models(ml100k_split, tmp_path_factory):
    """All four recommenders trained on ML-100K (SASRec with a short budget)."""
    from recagent.tools.recommenders import train

    budgets = {"sasrec": {"max_epochs": 12, "patience": 3}}  # BPR trains fully in ~15 s
    out = {}
    for name in ("pop", "itemknn", "bpr", "sasrec"):
        model, metrics = train(
            ml100k_split, name, budgets.get(name, {}), out_dir=tmp_path_factory.mktemp(name), show_progress=False
        )
        out[name] = (model, metrics)
    return out


@pytest.fixture(scope="session")
def ml100k_env(ml100k, ml100k_split, ml100k_models, tmp_path_factory):
    """A tool environment over ML-100K with the trained models and a persisted text index."""
    import os

    from recagent.tools.env import ToolEnv, ToolEnvConfig

    os.environ["RECAGENT_HOME"] = str(tmp_path_factory.mktemp("env-home"))
    env = ToolEnv(ml100k, ml100k_split, {k: m for k, (m, _) in ml100k_models.items()}, ToolEnvConfig())
    env.text_index()  # build once for the session
    return env


@pytest.fixture(scope="session")
def local_checkpoint(tmp_path_factory):
    """The offline default model (SmolLM2-135M) converted from its GGUF once per test session."""
    from recagent.agents.local_model import DEFAULT_MODEL_NAME, ensure_default_model

    return ensure_default_model(progress=False, target=tmp_path_factory.mktemp("llm") / DEFAULT_MODEL_NAME)


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """SmolLM2's tokenizer with its own chat template, read from the packaged GGUF (seconds, no conversion)."""
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    from recagent.agents.local_model import find_default_gguf

    hf_logging.disable_progress_bar()
    gguf = find_default_gguf()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, local_files_only=True)
    assert "{% generation %}" not in tok.chat_template and "<|im_start|>" in tok.chat_template
    return tok


def pytest_collection_modifyitems(items):
    for item in items:
        if "ml100k" in " ".join(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A PostgreSQL server for the whole run: $RECAGENT_TEST_POSTGRES_URL, else a throwaway cluster on loopback.

    Without PostgreSQL installed the tests that need it are skipped, saying why; RECAGENT_REQUIRE_POSTGRES=1
    (set by CI) makes that a failure.
    """
    from tests.pg_fixture import INSTALL, postgres_bin, throwaway_postgres

    given = os.environ.get("RECAGENT_TEST_POSTGRES_URL")
    if given:
        yield given
        return
    bin_dir = postgres_bin()
    if bin_dir is None:
        why = f"PostgreSQL is not installed ({INSTALL}), and RECAGENT_TEST_POSTGRES_URL names no server"
        if os.environ.get("RECAGENT_REQUIRE_POSTGRES"):
            pytest.fail(why)
        pytest.skip(why)
    with throwaway_postgres(bin_dir) as url:
        yield url


@pytest.fixture()
def postgres_url(postgres_server) -> Iterator[str]:
    """The URL of a new, empty database on that server, dropped after the test."""
    from tests.pg_fixture import fresh_database

    with fresh_database(postgres_server) as url:
        yield url


@pytest.fixture(scope="session")
def synthetic_synth_run(synthetic_env, tmp_path_factory) -> Path:
    """A programmatic synthesis run over the synthetic environment (train, validation and test splits); read only."""
    from recagent.synth.config import SynthConfig
    from recagent.synth.pipeline import synthesize

    out = tmp_path_factory.mktemp("synth")
    cfg = SynthConfig.build(n=40, test_fraction=0.2, validation_n=4, exports=[])
    synthesize(cfg, out, env=synthetic_env, progress=False)
    return out
