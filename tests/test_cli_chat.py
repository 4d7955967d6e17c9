"""``recagent chat`` and ``recagent recommend`` end to end, driven by a scripted OpenAI-compatible server."""

from __future__ import annotations

import io
import json

from openai_stub import Stub, completion, tool_call_message

from recagent.cli import main


def test_chat_one_message_json(dataset_dir, capsys):
    stub = Stub(
        [
            completion(tool_call_message("popular_items", '{"genre": "Comedy", "k": 2}', "c1")),
            completion({"content": "Try the first one."}),
        ]
    )
    try:
        code = main(
            [
                "chat",
                "--dataset",
                dataset_dir,
                "--base-url",
                stub.url,
                "--model",
                "stub",
                "--message",
                "a comedy please",
                "--json",
                "--session",
                "j",
            ]
        )
    finally:
        stub.close()
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["answer"] == "Try the first one."
    assert [s["kind"] for s in out["trace"]] == ["tool_call", "answer"]
    assert out["trace"][0]["tool"] == "popular_items" and len(out["trace"][0]["result_item_ids"]) == 2


def test_interactive_chat_commands_and_resume(dataset_dir, capsys, monkeypatch):
    stub = Stub(
        [
            completion(tool_call_message("retrieve_for_user", '{"user_id": 3, "k": 3}', "r1")),
            completion({"content": "Here you go."}),
            completion({"content": "You asked for recommendations before."}),
        ]
    )
    args = ["chat", "--dataset", dataset_dir, "--base-url", stub.url, "--model", "stub", "--session", "talk"]
    try:
        monkeypatch.setattr("sys.stdin", io.StringIO("/user 3\nsomething for me\n/trace\n/bogus\n/quit\n"))
        assert main(args) == 0
        first = capsys.readouterr().out
        monkeypatch.setattr("sys.stdin", io.StringIO("what did I ask?\n"))  # a restart: same session name
        assert main(args) == 0
        second = capsys.readouterr().out
    finally:
        stub.close()
    assert "now chatting as user 3" in first and "-> retrieve_for_user" in first and "Here you go." in first
    assert '"kind": "tool_call"' in first and "unknown command" in first
    assert second.count("You asked for recommendations before.") == 1  # streamed once, not printed again
    resumed = [m["content"] for m in stub.requests[2]["messages"] if m["role"] == "user"]
    assert resumed == ["something for me", "what did I ask?"]


def test_recommend_json(dataset_dir, capsys):
    stub = Stub(
        [
            completion(tool_call_message("retrieve_for_user", '{"user_id": 5, "k": 6}', "r")),
            completion({"content": "[1, 2]"}),
            completion({"content": "[1, 2]"}),
        ]
    )
    try:
        code = main(
            [
                "recommend",
                "--user",
                "5",
                "-k",
                "4",
                "--dataset",
                dataset_dir,
                "--base-url",
                stub.url,
                "--model",
                "stub",
                "--max-steps",
                "3",
                "--json",
            ]
        )
    finally:
        stub.close()
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["recommended"]) == 4 and out["filled"] >= 2


def test_chat_server_down_is_one_line(dataset_dir, capsys):
    code = main(
        [
            "chat",
            "--dataset",
            dataset_dir,
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--model",
            "stub",
            "--message",
            "hi",
            "--json",
            "-o",
            "policy.max_retries=0",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the policy server" in err and "Traceback" not in err


def test_model_and_tool_text_is_printed_as_text_not_markup():
    from recagent.agents.steps import StepRecord
    from recagent.cli import chat

    chat.console.record = True
    try:
        chat.console.export_text()  # drop anything recorded before
        chat._print_step(
            StepRecord(
                0,
                0,
                "tool_call",
                "search_items",
                {"query": "[bold]noir[/]"},
                "c1",
                False,
                "unknown genre '[italic]Polka'",
                "[summary]",
                [],
                3.0,
            )
        )
        chat._print_step(StepRecord(1, 0, "invalid_call", "x", None, valid=False, error="bad call [red]"))
        text = chat.console.export_text()
    finally:
        chat.console.record = False
    assert '{"query": "[bold]noir[/]"}' in text and "[summary]" in text
    assert "'[italic]Polka'" in text and "bad call [red]" in text
