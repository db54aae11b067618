"""One webhook POST, safely (issue 16).

- The host is resolved once and checked (shared/webhook_urls.py); the connection goes to
  that checked address (the URL's host is swapped for it; `Host` and the TLS server name
  stay the original host, so certificates are verified against the name), so a DNS answer
  changing after the check (rebinding) cannot redirect us.
- Redirects are not followed (a 3xx is a failed attempt).
- At most `BODY_CAP` bytes of the answer are read; only `EXCERPT_CHARS` are kept.
- 2xx within `timeout` is success; anything else, including a slow answer, is a failure.
"""

from __future__ import annotations

import functools
import ssl
import time

import httpx

from shared.store.webhooks import EXCERPT_CHARS, Outcome
from shared.webhook_signing import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature
from shared.webhook_urls import UnsafeWebhookUrl, check_url

BODY_CAP = 4096
USER_AGENT = "dataplane-webhooks/1"


def post_event(url: str, *, secret: str, event_id: str, body: bytes, timeout: float,
               allow_private: bool) -> Outcome:
    try:
        target = check_url(url, allow_private=allow_private)
    except UnsafeWebhookUrl as error:
        return Outcome(None, error.message, None)
    timestamp = str(int(time.time()))
    original = httpx.URL(url)
    headers = {
        "Content-Type": "application/json", "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id, TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Host": original.netloc.decode("ascii"),
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    started = time.monotonic()
    last_error = "no address"
    with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False,
                      verify=_tls_context()) as client:
        for address in target.addresses:  # every one of them passed the check
            remaining = timeout - (time.monotonic() - started)
            if remaining <= 0:
                break
            pinned = original.copy_with(host=address.split("%", 1)[0])
            try:
                with client.stream("POST", pinned, content=body, headers=headers,
                                   extensions={**extensions, "timeout": _timeout(remaining)},
                                   ) as response:
                    excerpt = _read_capped(response)
                    if time.monotonic() - started > timeout:
                        return Outcome(response.status_code,
                                       f"answered after more than {timeout:g}s", excerpt)
                    return Outcome(response.status_code, None, excerpt)
            except httpx.ConnectError as error:
                last_error = f"connect failed: {error}"[:EXCERPT_CHARS]
                continue
            except httpx.TimeoutException:
                return Outcome(None, f"no answer within {timeout:g}s", None)
            except httpx.HTTPError as error:
                return Outcome(None, f"{type(error).__name__}: {error}"[:EXCERPT_CHARS], None)
    return Outcome(None, last_error, None)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Built once per process: loading the CA bundle costs more CPU than a whole delivery.
    return ssl.create_default_context()


def _timeout(seconds: float) -> dict[str, float]:
    return {"connect": seconds, "read": seconds, "write": seconds, "pool": seconds}


def _read_capped(response: httpx.Response) -> str:
    data = b""
    for chunk in response.iter_raw():
        data += chunk
        if len(data) >= BODY_CAP:
            break
    return data[:BODY_CAP].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
