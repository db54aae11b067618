"""Request dependencies: the process's settings and store, and the caller (bearer token)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Annotated, get_origin

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.config import Settings
from shared.errors import AuthenticationFailed, InvalidRequest
from shared.storage import Storage
from shared.store import Store
from shared.store.tokens import Principal, authenticate


class AppContext:
    """Settings, and the store opened on first use: building the app (for its OpenAPI
    document, say) must not touch a database or create a data dir."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self.settings = settings
        self._store = store
        self._storage: Storage | None = None
        self._lock = threading.Lock()

    @property
    def storage(self) -> Storage:
        if self._storage is None:
            with self._lock:
                if self._storage is None:
                    self._storage = Storage.from_settings(self.settings)
        return self._storage

    @property
    def store(self) -> Store:
        if self._store is None:
            with self._lock:
                if self._store is None:
                    self._store = Store.from_settings(self.settings)
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.context
    return ctx


def _store(ctx: Annotated[AppContext, Depends(context)]) -> Store:
    return ctx.store


def _storage(ctx: Annotated[AppContext, Depends(context)]) -> Storage:
    return ctx.storage


def _settings(ctx: Annotated[AppContext, Depends(context)]) -> Settings:
    return ctx.settings


# auto_error=False: we answer 401 ourselves, with our error body and challenge header.
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`; tokens "
                     "come from `dataplane tokens create --company-id C --user-id U`")


def _principal(store: Annotated[Store, Depends(_store)],
               credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
               ) -> Principal:
    if credentials is None:  # no header, another scheme, or no token after "Bearer"
        raise AuthenticationFailed("Missing or malformed Authorization header; "
                                   "expected 'Bearer <token>'")
    with store.unit_of_work() as session:
        return authenticate(session, credentials.credentials)


def single_valued_query(request: Request) -> None:
    """A scalar query parameter given twice (`?per_page=10&per_page=600`) is ambiguous: a 400,
    rather than silently using one of the values. List parameters (`state`, `tag`, ...)
    are meant to repeat."""
    counts = Counter(key for key, _ in request.query_params.multi_items())
    repeated = {key for key, count in counts.items() if count > 1}
    if not repeated:
        return
    dependant = getattr(request.scope.get("route"), "dependant", None)
    lists = {field.alias for field in (dependant.query_params if dependant else ())
             if get_origin(field.field_info.annotation) in (list, set, tuple)}
    if scalars := sorted(repeated - lists):
        raise InvalidRequest(f"Query parameter given more than once: {', '.join(scalars)}")


StoreDep = Annotated[Store, Depends(_store)]
StorageDep = Annotated[Storage, Depends(_storage)]
SettingsDep = Annotated[Settings, Depends(_settings)]
CurrentPrincipal = Annotated[Principal, Depends(_principal)]
