"""Standard Webhooks signatures (https://www.standardwebhooks.com/), so that receivers verify
deliveries with the public `standardwebhooks` or `svix` libraries unchanged.

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`, signed with HMAC-SHA256 under
the base64-decoded part of the `whsec_` secret; the header lists `v1,<base64 signature>` once
per secret, space-separated, which is how a rotation's overlap signs with both keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from integrations.models import SECRET_PREFIX


def signature(*, secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(*, secrets: list[str], webhook_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(
        signature(secret=s, webhook_id=webhook_id, timestamp=timestamp, body=body) for s in secrets
    )
