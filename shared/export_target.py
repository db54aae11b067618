"""Export targets: an S3 bucket and prefix, a file format, and credentials.

A target arrives as TD's result URL, `s3://KEY:SECRET@host:port/bucket/prefix?format=csv.gz`
(host empty for AWS: `s3://KEY:SECRET@/bucket/prefix`; HTTPS unless `ssl=false`), or as the
form fields of `/v3/export/run`. Its credentials are kept apart from the rest: Fernet-encrypted
with DATAPLANE_SECRET_KEY at rest, and shown only in the redacted form
`s3://***@host/bucket/prefix`. Nothing here ever puts a secret into a message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.fernet import Fernet, InvalidToken

from shared.config import Settings
from shared.errors import InvalidRequest, UserError

FORMATS = ("csv", "csv.gz", "tsv.gz", "json.gz", "jsonl.gz", "parquet")
MISSING_KEY = ("Exports need DATAPLANE_SECRET_KEY (a Fernet key) to encrypt the target's "
               "credentials at rest; it is not set on this server")


class TargetCredentialsUnreadable(UserError):
    """The stored credentials cannot be decrypted (the secret key changed)."""


@dataclass(frozen=True)
class Location:
    """The non-secret half of a target."""

    bucket: str
    prefix: str
    format: str
    endpoint: str | None = None  # http(s)://host:port; None: AWS
    region: str = "us-east-1"

    def redacted(self) -> str:
        host = urlsplit(self.endpoint).netloc if self.endpoint else ""
        return f"s3://***@{host}/{self.bucket}/{self.prefix}".rstrip("/")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Location:
        return cls(**{k: value[k] for k in ("bucket", "prefix", "format", "endpoint", "region")
                      if k in value})


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str

    def __repr__(self) -> str:  # never in a log line or a traceback
        return "Credentials(***)"


@dataclass(frozen=True)
class Target:
    location: Location
    credentials: Credentials

    def __repr__(self) -> str:
        return f"Target({self.location.redacted()})"


def _check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidRequest(f"Unsupported export format {fmt!r}: one of {', '.join(FORMATS)}")
    return fmt


def parse_result_url(url: str, *, default_format: str = "csv") -> Target:
    """TD's S3 result URL (see the module docstring); 400 naming what is wrong, never the URL."""
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise InvalidRequest("Unsupported result URL: only s3://KEY:SECRET@host/bucket/prefix "
                             "targets are supported")
    if parts.username is None or parts.password is None:
        raise InvalidRequest("The result URL needs credentials: s3://KEY:SECRET@host/bucket/prefix")
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path:
        raise InvalidRequest("The result URL needs a bucket: s3://KEY:SECRET@host/bucket/prefix")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    ssl = query.get("ssl", "true").lower() not in ("false", "0", "no")
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    endpoint = f"{'https' if ssl else 'http'}://{host}" if host else None
    location = Location(bucket=path[0], prefix="/".join(path[1:]),
                        format=_check_format(query.get("format", default_format)),
                        endpoint=endpoint, region=query.get("region", "us-east-1"))
    return Target(location, Credentials(unquote(parts.username), unquote(parts.password)))


def _fernet(settings: Settings) -> Fernet:
    if settings.secret_key is None:
        raise InvalidRequest(MISSING_KEY)
    try:
        return Fernet(settings.secret_key.get_secret_value().encode())
    except ValueError:
        raise InvalidRequest("DATAPLANE_SECRET_KEY is not a valid Fernet key "
                             "(32 url-safe base64-encoded bytes)") from None


def require_secret_key(settings: Settings) -> None:
    _fernet(settings)


def encrypt_credentials(settings: Settings, credentials: Credentials) -> str:
    payload = json.dumps({"access_key_id": credentials.access_key_id,
                          "secret_access_key": credentials.secret_access_key})
    return _fernet(settings).encrypt(payload.encode()).decode()


def decrypt_credentials(settings: Settings, token: str) -> Credentials:
    try:
        payload = json.loads(_fernet(settings).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise TargetCredentialsUnreadable(
            "The export target's credentials cannot be decrypted with this server's "
            "DATAPLANE_SECRET_KEY (was the key changed?)") from None
    return Credentials(payload["access_key_id"], payload["secret_access_key"])
