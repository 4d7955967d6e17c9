"""`recagent serve` as a user runs it: a real process, its config checks, and a policy server that is down."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx

from recagent.cli import main


def test_serve_refuses_a_public_host_without_keys(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("RECAGENT_API_KEYS", raising=False)
    assert main(["serve", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "not loopback: set API keys in $RECAGENT_API_KEYS" in err and "Traceback" not in err
    bad = tmp_path / "serve.yaml"
    bad.write_text("workers: 0\n")
    assert main(["serve", "--config", str(bad)]) == 2
    assert "workers: Input should be greater than or equal to 1" in capsys.readouterr().err


def test_serve_process_answers_and_reports_a_dead_policy_server_as_502(dataset_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # the policy server is an address nothing listens on: the server must still start and say what is wrong
    cmd = [
        sys.executable,
        "-m",
        "recagent.cli",
        "serve",
        "--port",
        str(port),
        "--dataset",
        dataset_dir,
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--model",
        "absent",
        "-o",
        "agent.policy.max_retries=0",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                health = httpx.get(f"{url}/health", timeout=2)
                break
            except httpx.HTTPError:
                assert proc.poll() is None and time.time() < deadline, (
                    proc.stderr.read() if proc.poll() is not None else "timeout"
                )
                time.sleep(0.5)
        assert health.json() | {"dataset": "synthetic", "policy": "openai"} == health.json()
        sid = httpx.post(f"{url}/v1/sessions", json={}).json()["id"]
        r = httpx.post(
            f"{url}/v1/chat/completions",
            timeout=60,
            json={"model": "recagent", "session_id": sid, "messages": [{"role": "user", "content": "hello"}]},
        )
        assert (
            r.status_code == 502
            and "cannot reach the policy server at http://127.0.0.1:9/v1" in r.json()["error"]["message"]
        )
        assert httpx.get(f"{url}/v1/sessions/{sid}").json()["messages"] == []  # the failed turn left nothing behind
        m = httpx.get(f"{url}/metrics").json()
        assert m["turns"] == {"failed": 1} and m["routes"]["POST /v1/chat/completions"]["by_status"] == {"502": 1}
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode in (0, -15) and "Traceback" not in err, err
    assert f"http://127.0.0.1:{port}/" in err
