"""The recagent command: subcommands work end to end, bad input ends in one clear line and a non-zero code."""

from __future__ import annotations

import json
import shutil

from recagent.cli import main
from recagent.paths import dataset_dir, model_dir


def test_tools_list_json_needs_no_data(capsys):
    assert main(["tools", "list", "--json"]) == 0
    schemas = json.loads(capsys.readouterr().out)
    assert {s["function"]["name"] for s in schemas} >= {"search_items", "rank_items", "get_item"}


def test_errors_are_one_line(capsys):
    assert main(["data", "info", "no-such-dataset"]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and "no-such-dataset" in err
    assert main(["recs", "train", "--model", "bogus"]) == 2
    assert "unknown model 'bogus'" in capsys.readouterr().err
    assert main(["recs", "train", "--model", "pop", "-o", "params.k=3"]) == 2
    assert "params.k: Extra inputs are not permitted" in capsys.readouterr().err


def test_usage_errors_are_messages_not_tracebacks(capsys):
    assert main(["recs", "train", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option" in err and "Traceback" not in err
    main(["recs"])  # no subcommand: the help, not a traceback
    out = capsys.readouterr()
    assert "Usage" in out.out + out.err and "Traceback" not in out.err


def test_train_eval_and_call_on_ml100k(real_ml100k_dir, capsys):
    shutil.copytree(real_ml100k_dir, dataset_dir("ml-100k"))
    assert main(["data", "info", "ml-100k", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["split"] == {"train": 98_114, "valid": 943, "test": 943}
    for name in ("pop", "itemknn"):
        assert main(["recs", "train", "--model", name, "--no-progress"]) == 0
    assert (model_dir("ml-100k", "itemknn") / "model.pt").is_file()
    capsys.readouterr()
    assert main(["recs", "eval", "--model", "itemknn", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)["itemknn"]
    assert metrics["NDCG@10"] > 0.04
    # tools need every default model: point the env at the two trained ones via the error path first
    assert main(["tools", "call", "popular_items", '{"k": 2}']) == 2
    assert "recagent recs train --model bpr" in capsys.readouterr().err


def test_tools_call_reports_tool_errors_as_json(real_ml100k_dir, capsys):
    shutil.copytree(real_ml100k_dir, dataset_dir("ml-100k"))
    assert main(["recs", "train", "--model", "pop", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["tools", "call", "popular_items", '{"genre": "War", "k": 2}', "--models", "pop"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["items"]) == 2 and all("War" in it["genres"] for it in out["items"])
    assert main(["tools", "call", "popular_items", '{"genre": "Cartoon"}', "--models", "pop"]) == 1
    err = json.loads(capsys.readouterr().out)["error"]
    assert err["error"] == "invalid_value" and "valid genres" in err["message"]
