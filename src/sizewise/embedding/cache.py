"""On-disk embedding cache: one SQLite file, key = sha256 of (model id, text), value = float32 bytes.

SQLite (not npy shards) because several processes (bench, gateway, tests) may read and add
at once; WAL mode lets readers and one writer share the file.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sizewise.paths import cache_dir

_CHUNK = 500  # keys per IN (...) query, below SQLite's variable limit


def text_key(model_id: str, text: str) -> bytes:
    """The cache key of ``text`` under ``model_id``."""
    return hashlib.sha256(model_id.encode() + b"\0" + text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """Vectors by key, persisted in ``<cache_dir>/embeddings/<name>.sqlite``."""

    def __init__(self, path: Path | None = None, name: str = "all-MiniLM-L6-v2", dim: int = 384) -> None:
        self.path = path or cache_dir() / "embeddings" / f"{name}.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self.path, timeout=60)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vec BLOB NOT NULL)")
            self._local.connection = connection
        return connection

    def get_many(self, keys: Sequence[bytes]) -> dict[bytes, np.ndarray]:
        """The cached vectors among ``keys`` (missing keys are simply absent)."""
        found: dict[bytes, np.ndarray] = {}
        connection = self._connection()
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for key, blob in connection.execute(f"SELECT key, vec FROM vectors WHERE key IN ({marks})", chunk):
                vector = np.frombuffer(blob, dtype=np.float32)
                if vector.size == self.dim:  # a truncated row is treated as missing and recomputed
                    found[bytes(key)] = vector
        return found

    def put_many(self, items: Sequence[tuple[bytes, np.ndarray]]) -> None:
        """Store vectors (replacing any with the same key)."""
        connection = self._connection()
        with connection:
            connection.executemany(
                "INSERT OR REPLACE INTO vectors (key, vec) VALUES (?, ?)",
                [(key, np.asarray(vec, dtype=np.float32).tobytes()) for key, vec in items],
            )

    def __len__(self) -> int:
        return int(self._connection().execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
