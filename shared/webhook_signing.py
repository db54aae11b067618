"""Webhook event ids, bodies and signatures (issue 16).

    X-Dataplane-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>

The event id is derived from (subscription, transition), so every retry and every
duplicate of one event carries the same id, and it needs no storage or SQL function.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime
from typing import Any

EVENT_NAMESPACE = uuid.UUID("5b0c1d6e-9a57-4e55-9c43-7e0d6b7d1a16")
SIGNATURE_HEADER = "X-Dataplane-Signature"
TIMESTAMP_HEADER = "X-Dataplane-Timestamp"
EVENT_ID_HEADER = "X-Dataplane-Event-Id"


def event_id(subscription_id: uuid.UUID, transition_id: int) -> uuid.UUID:
    return uuid.uuid5(EVENT_NAMESPACE, f"{subscription_id}/{transition_id}")


def event_body(*, subscription_id: uuid.UUID, transition_id: int, occurred_at: datetime,
               job: dict[str, Any], previous_state: str | None, state: str) -> bytes:
    body = {
        "event_id": str(event_id(subscription_id, transition_id)),
        "subscription_id": str(subscription_id),
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "job": job,
        "previous_state": previous_state,
        "state": state,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, header: str) -> bool:
    """What a receiver does (also shown in the README)."""
    return hmac.compare_digest(signature(secret, timestamp, body), header)
