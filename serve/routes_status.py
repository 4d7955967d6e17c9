"""Health, metrics and the model list."""

from __future__ import annotations

from recagent.serve.deps import ServerDep, api_router

router = api_router()


@router.get("/health")
async def health(server: ServerDep) -> dict:
    env = server.agent.context.env
    return {
        "status": "ok",
        "model": server.config.model_name,
        "dataset": env.dataset.name,
        "policy": server.config.agent.policy.kind,
        "running": server.gate.running,
        "waiting": server.gate.waiting,
    }


@router.get("/metrics")
async def metrics(server: ServerDep) -> dict:
    g = server.gate
    return server.metrics.snapshot(
        running=g.running, waiting=g.waiting, peak_running=g.peak_running, workers=g.workers, max_queue=g.max_queue
    )


@router.get("/v1/models")
async def models(server: ServerDep) -> dict:
    return {
        "object": "list",
        "data": [
            {
                "id": server.config.model_name,
                "object": "model",
                "created": int(server.metrics.started),
                "owned_by": "recagent",
            }
        ],
    }
