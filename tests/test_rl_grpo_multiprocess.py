"""StepGRPO across two processes (torch.distributed on CPU, as `accelerate launch` runs it on GPUs): a task's group
is split between the processes, and each step's advantage is normalised over the whole group, not per process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recagent.rl.advantages import step_advantages_for_groups

pytestmark = pytest.mark.slow
WORKER = Path(__file__).with_name("rl_two_process_worker.py")


def test_a_group_split_across_processes_gets_group_advantages(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(WORKER.parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(WORKER),
        str(tmp_path),
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    # rank 0 played the good episode, rank 1 the bad one: one group of two, split across the processes
    assert [r["step_rewards"] for r in ranks] == [[[1.5, 2.0]], [[0.0, 0.0]]]
    expected = step_advantages_for_groups([[1.5, 2.0], [0.0, 0.0]], 2, gamma=0.5)
    for r, exp in zip(ranks, expected):
        adv = torch.tensor(r["advantages"][0])
        for (s, e), a in zip(r["spans"][0], exp):
            assert torch.allclose(adv[s:e], torch.tensor(a)), (r["spans"], exp)
    # per process alone the good episode would have had zero advantage (a group of one); the whole group gives it
    assert expected[0][0] > 0 > expected[1][0]
    # both processes took the same (synchronised) step, and it moved the weights
    assert ranks[0]["moved"] > 0 and ranks[0]["checksum"] == pytest.approx(ranks[1]["checksum"], rel=1e-9, abs=1e-9)


def test_ppo_refuses_to_run_in_several_processes(monkeypatch):
    from recagent.errors import RecagentError
    from recagent.rl.ppo import StepPPOTrainer

    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RecagentError, match="PPO runs in one process"):
        StepPPOTrainer(None, None, [], None, None)
