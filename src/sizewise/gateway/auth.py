"""Optional API keys: clients send ``Authorization: Bearer <key>``; the config stores only sha256 digests.

With no keys configured the gateway is open (it listens on loopback by default).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from sizewise.catalog.schema import ApiKey
from sizewise.gateway.errors import GatewayError


def hash_key(key: str) -> str:
    """The sha256 hex digest to put in ``gateway.api_keys[].sha256``."""
    return hashlib.sha256(key.encode()).hexdigest()


class KeyChecker:
    """Maps a presented key to its configured name, or raises a 401."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self.by_digest = {key.sha256: key for key in keys}

    @property
    def enabled(self) -> bool:
        """True when at least one key is configured."""
        return bool(self.by_digest)

    def check(self, headers: Mapping[str, str]) -> ApiKey | None:
        """The key record for this request (None when keys are off); 401 when missing or wrong."""
        if not self.by_digest:
            return None
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else headers.get("x-api-key", "")
        if not token:
            raise GatewayError(401, "missing API key: send 'Authorization: Bearer <key>'", "missing_api_key")
        record = self.by_digest.get(hash_key(token))
        if record is None:
            raise GatewayError(401, "invalid API key", "invalid_api_key")
        return record
