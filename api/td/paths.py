"""td-client joins its endpoint and a path with "/": an endpoint without a trailing slash
gives `GET //v3/job/...`. This ASGI middleware collapses the leading slashes."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class LeadingSlashes:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path", "").startswith("//"):
            path = "/" + scope["path"].lstrip("/")
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)
