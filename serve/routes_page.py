"""The web chat page."""

from __future__ import annotations

from importlib import resources

from fastapi.responses import HTMLResponse

from recagent.serve.deps import ServerDep, api_router

router = api_router()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(server: ServerDep) -> HTMLResponse:
    html = resources.files("recagent.serve").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(html.replace("{{MODEL}}", server.config.model_name), headers={"Cache-Control": "no-store"})
