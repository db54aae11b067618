"""A TD POST body as a flat dict of strings: multipart/form-data (what td-client sends),
application/x-www-form-urlencoded and JSON (the seed's curl examples), or empty (kill).

Multipart is parsed with the standard library's email parser: the framework's own form
parsing needs python-multipart, which this service does not depend on."""

from __future__ import annotations

import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request

from shared.errors import InvalidRequest


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def parse_form(content_type: str, body: bytes) -> dict[str, str]:
    kind = content_type.split(";", 1)[0].strip().lower()
    if not body.strip():
        return {}
    if kind == "multipart/form-data":
        head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
        message = BytesParser(policy=HTTP).parsebytes(head + body)
        if not message.is_multipart():
            raise InvalidRequest("Malformed multipart/form-data body")
        fields: dict[str, str] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if isinstance(name, str):
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                fields[name] = data.decode("utf-8", errors="replace")
        return fields
    if kind == "application/json":
        try:
            value = json.loads(body)
        except ValueError as error:
            raise InvalidRequest(f"Malformed JSON body: {error}") from None
        if not isinstance(value, dict):
            raise InvalidRequest("The JSON body must be an object")
        return {str(k): _text(v) for k, v in value.items() if v is not None}
    # urlencoded, or no content type at all
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise InvalidRequest("The form body is not UTF-8") from None


async def read_form(request: Request) -> dict[str, str]:
    return parse_form(request.headers.get("content-type", ""), await request.body())


def int_field(form: dict[str, str], name: str, *, default: int, low: int, high: int) -> int:
    raw = form.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}, got {value}")
    return value
