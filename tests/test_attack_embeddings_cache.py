"""``POST /v1/embeddings`` must leave a client's texts in no cache that another client's timing can read.

The local MiniLM keeps vectors in an in-process memo and an on-disk SQLite cache shared by every process; an
answer from them comes about twice as fast (24 ms against 50 ms for a 70-word text, measured with two keys),
so any client could tell whether someone, at any time, had embedded a given text, and every new text grew
the file for good. A live gateway on 127.0.0.1 with two keys and the official openai client.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from sizewise.gateway.auth import hash_key

pytestmark = pytest.mark.usefixtures("private_embedding_cache")

KEYS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def gateway(private_embedding_cache: None) -> Iterator[GatewayServer]:
    with FakeUpstream() as upstream:
        catalog = {
            "models": [fake_model("small", "ok", 1, upstream.base_url)],
            "gateway": {
                "log_url": "none",
                "api_keys": [{"name": name, "sha256": hash_key(key)} for name, key in KEYS.items()],
            },
        }
        with GatewayServer(catalog) as gw:
            yield gw


def _embed(gateway: GatewayServer, who: str, text: str) -> np.ndarray:
    client = openai.OpenAI(base_url=gateway.url, api_key=KEYS[who], max_retries=0, timeout=60)
    return np.asarray(client.embeddings.create(model="all-MiniLM-L6-v2", input=text).data[0].embedding)


def test_an_embedded_text_leaves_no_trace_in_the_shared_caches(gateway: GatewayServer) -> None:
    import sizewise.embedding as embedding
    from sizewise.embedding.cache import text_key

    secret = f"Layoffs planned for the Berlin office, list attached ({uuid.uuid4().hex})."
    vector = _embed(gateway, "alice", secret)
    key = text_key(embedding.MODEL_ID, secret)
    disk = embedding.get_cache()
    assert disk is not None and disk.get_many([key]) == {}  # nothing on disk
    assert key not in embedding._MEMO  # nothing in memory
    assert np.allclose(_embed(gateway, "bob", secret), vector, atol=1e-6)  # the same answer, made afresh
