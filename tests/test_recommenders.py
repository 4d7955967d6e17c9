"""Contract tests every recommender inherits, metric floors on real data, resume after interruption."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recagent.errors import ModelNotFoundError, RecagentError
from recagent.tools.recommenders import MODELS, Query, get_model_class, load_trained
from recagent.tools.recommenders.evaluate import evaluate, metrics_from_ranks, target_ranks
from recagent.tools.recommenders.training import RESUME_FILE

FAST = {"bpr": {"max_epochs": 40}, "sasrec": {"max_epochs": 10}}


@pytest.fixture(scope="module")
def fitted(synthetic_split):
    out = {}
    for name, cls in MODELS.items():
        model = cls(cls.config_cls(**FAST.get(name, {})))
        model.fit(synthetic_split, show_progress=False)
        out[name] = model
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_score_shape_and_topk_contract(fitted, synthetic_split, name):
    model = fitted[name]
    n = synthetic_split.dataset.n_items
    cases = synthetic_split.cases("test")[:5]
    scores = model.score([Query(history=c.history, user=c.user) for c in cases])
    assert scores.shape == (5, n) and scores.dtype == np.float32 and np.isfinite(scores).all()
    c = cases[0]
    items, s = model.topk(Query(c.history, c.user), 10, exclude=c.history)
    assert len(items) == 10 and len(set(items.tolist())) == 10
    assert not set(items.tolist()) & set(c.history.tolist())
    assert np.all(np.diff(s) <= 0)
    # asking for more than remains returns only what remains
    everything = np.arange(n)
    assert len(model.topk(Query(c.history, c.user), 10, exclude=everything[3:])[0]) == 3


@pytest.mark.parametrize("name", list(MODELS))
def test_save_load_gives_identical_scores(fitted, synthetic_split, tmp_path, name):
    model = fitted[name]
    model.save(tmp_path)
    again = get_model_class(name).load(tmp_path)
    qs = [Query(c.history, c.user) for c in synthetic_split.cases("test")[:8]]
    np.testing.assert_allclose(model.score(qs), again.score(qs), rtol=1e-6)


@pytest.mark.parametrize("name", [n for n in MODELS if n != "pop"])
def test_learned_models_beat_popularity_on_synthetic(fitted, synthetic_split, name):
    pop = evaluate(fitted["pop"], synthetic_split, "test")["NDCG@10"]
    assert evaluate(fitted[name], synthetic_split, "test")["NDCG@10"] > pop + 0.1


def test_unknown_users_fold_in_from_history(fitted, synthetic_split):
    c = synthetic_split.cases("test")[0]
    bpr = fitted["bpr"]
    known = bpr.score([Query(c.history, c.user)])[0]
    folded = bpr.score([Query(c.history, None)])[0]
    assert not np.allclose(known, folded)
    assert np.corrcoef(known, folded)[0, 1] > 0.3  # both reflect the same taste


def test_training_changes_weights(synthetic_split):
    cls = MODELS["sasrec"]
    torch.manual_seed(0)
    model = cls(cls.config_cls(max_epochs=1))
    model.n_items = synthetic_split.dataset.n_items
    model._build()
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    model.fit(synthetic_split, show_progress=False)
    changed = [k for k, v in model.net.state_dict().items() if not torch.equal(v, before[k])]
    assert "item.weight" in changed and len(changed) > len(before) // 2


def test_interrupted_training_resumes(synthetic_split, tmp_path, monkeypatch):
    cls = MODELS["bpr"]
    cfg = cls.config_cls(max_epochs=6, patience=100)
    from recagent.tools.recommenders import training

    calls = {"n": 0}
    real = training.evaluate

    def flaky_evaluate(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(training, "evaluate", flaky_evaluate)
    with pytest.raises(KeyboardInterrupt):
        cls(cfg).fit(synthetic_split, show_progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / RESUME_FILE).is_file()
    report = cls(cfg).fit(synthetic_split, show_progress=False, checkpoint_dir=tmp_path)
    assert report.epochs == 6
    assert [e["epoch"] for e in report.log] == [1, 2, 3, 4, 5, 6]  # epochs 1-2 restored, 3-6 run
    assert not (tmp_path / RESUME_FILE).exists()


def test_metrics_from_ranks():
    m = metrics_from_ranks(np.array([0, 1, 9, 10, 100]))
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)
    assert m["NDCG@10"] == pytest.approx((1 + 1 / np.log2(3) + 1 / np.log2(11)) / 5)


def test_constant_scorer_gets_no_free_hits(fitted, synthetic_split):
    class Constant:
        def score(self, queries):
            return np.zeros((len(queries), synthetic_split.dataset.n_items), dtype=np.float32)

    ranks = target_ranks(Constant(), synthetic_split.cases("test"))
    # ties break by item index: a target's rank is the number of unseen items before it
    c = synthetic_split.cases("test")[0]
    assert ranks[0] == np.count_nonzero(~np.isin(np.arange(c.target), c.history))


def test_errors_are_clear(tmp_path):
    with pytest.raises(RecagentError, match="unknown model 'nope'; choose one of: pop, itemknn, bpr, sasrec"):
        get_model_class("nope")
    with pytest.raises(ModelNotFoundError, match="recagent recs train --model sasrec --dataset ml-100k"):
        load_trained("ml-100k", "sasrec", tmp_path)
    (tmp_path / "model.pt").write_bytes(b"garbage")
    (tmp_path / "config.json").write_text('{"model": "bpr"}')
    with pytest.raises(RecagentError, match="unreadable"):
        get_model_class("bpr").load(tmp_path)


# -- real data: every learned model beats popularity, with floors ------------------------------------------------

FLOORS = {"pop": 0.035, "itemknn": 0.045, "bpr": 0.05, "sasrec": 0.08}


@pytest.mark.parametrize("name", list(FLOORS))
def test_ml100k_metric_floors(ml100k_models, name):
    _, metrics = ml100k_models[name]
    assert metrics["test"]["NDCG@10"] >= FLOORS[name]
    if name != "pop":
        assert metrics["test"]["NDCG@10"] > ml100k_models["pop"][1]["test"]["NDCG@10"]
        assert metrics["valid"]["NDCG@10"] > ml100k_models["pop"][1]["valid"]["NDCG@10"]
