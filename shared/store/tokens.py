"""API tokens: printed once at creation, stored as SHA-256, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared.errors import AuthenticationFailed
from shared.store.db import execute_dml
from shared.store.models import ApiToken
from shared.store.types import utcnow

TOKEN_PREFIX = "dp_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: decides request_source; never taken from the request body."""

    company_id: int
    user_id: int


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, *, company_id: int, user_id: int) -> str:
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(company_id=company_id, user_id=user_id, token_sha256=hash_token(token)))
    session.flush()
    return token


def authenticate(session: Session, token: str) -> Principal:
    digest = hash_token(token)
    row = session.scalars(select(ApiToken).where(ApiToken.token_sha256 == digest)).one_or_none()
    # The index lookup already matched; the constant-time compare keeps the check itself
    # free of early exits should the lookup ever become a prefix or range scan.
    if row is None or not hmac.compare_digest(row.token_sha256, digest) or row.revoked_at:
        raise AuthenticationFailed("Invalid or revoked token")
    return Principal(company_id=row.company_id, user_id=row.user_id)


def revoke_token(session: Session, token: str) -> bool:
    stmt = (update(ApiToken)
            .where(ApiToken.token_sha256 == hash_token(token), ApiToken.revoked_at.is_(None))
            .values(revoked_at=utcnow()))
    return execute_dml(session, stmt) == 1
