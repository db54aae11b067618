"""The OpenAPI document, as served at `/openapi.json` and checked in as `docs/openapi.json`.

    python -m api.openapi > docs/openapi.json
"""

from __future__ import annotations

import json
import sys

from fastapi import FastAPI


def document(app: FastAPI | None = None) -> str:
    """The document as checked in: stable key order, two-space indent, trailing newline."""
    if app is None:
        from api.app import create_app
        from shared.config import Settings

        app = create_app(Settings())
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(document())
