"""`Authorization: TD1 <token>` (what td-client sends) or `Bearer <token>`: the same tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from api.deps import StoreDep
from shared.errors import AuthenticationFailed
from shared.store.tokens import Principal, authenticate

SCHEMES = ("td1", "bearer")


def td_principal(request: Request, store: StoreDep) -> Principal:
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in SCHEMES or not token:
        raise AuthenticationFailed("Missing or malformed Authorization header; "
                                   "expected 'TD1 <token>' or 'Bearer <token>'")
    with store.unit_of_work() as session:
        return authenticate(session, token)


TdPrincipal = Annotated[Principal, Depends(td_principal)]
