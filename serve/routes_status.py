"""Health, metrics (JSON, or Prometheus text by content negotiation) and the model list."""

from __future__ import annotations

from fastapi import Request, Response

from recagent.serve.deps import ServerDep, api_router
from recagent.serve.metrics import prefers_exposition
from recagent.serve.protocol import StrictJSONResponse

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
async def metrics(server: ServerDep, request: Request) -> Response:
    """Prometheus text (OpenMetrics if asked for) when the Accept header prefers it, as Prometheus' does; else JSON."""
    accept = request.headers.get("accept")
    vary = {"Vary": "Accept"}
    if prefers_exposition(accept):
        body, content_type = server.metrics.exposition(accept)
        return Response(body, media_type=content_type, headers=vary)
    return StrictJSONResponse(server.metrics.snapshot(), headers=vary)


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
