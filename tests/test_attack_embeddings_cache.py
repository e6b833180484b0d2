"""A client's texts must enter no embedding cache that another client's timing can read.

The local MiniLM keeps vectors in an in-process memo and an on-disk SQLite cache shared by every process; an
answer from them comes about twice as fast (24 ms against 50 ms for a 70-word text, measured with two keys on
``/v1/embeddings``), so any client could tell whether someone, at any time, had sent a given text (to
``/v1/embeddings``, or to a router or domain route on MiniLM, timed through ``/v1/route``), and every new text
grew the file for good. A live gateway on 127.0.0.1 with two keys, the official openai client, and a k-NN
router on MiniLM in its router directory.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from fakes import FakeUpstream, GatewayServer, fake_model
from learned_helpers import planted_pair
from sizewise.gateway.auth import hash_key

pytestmark = pytest.mark.usefixtures("private_embedding_cache")

KEYS = {"alice": "alice-secret", "bob": "bob-secret"}


@pytest.fixture(scope="module")
def gateway(private_embedding_cache: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    from sizewise.routers.knn import KNNRouter

    routers = tmp_path_factory.mktemp("routers")
    KNNRouter(k=5, embedding="minilm").fit(planted_pair(40)).save(routers / "pool.zip")
    with FakeUpstream() as upstream:
        catalog = {
            "models": [
                fake_model("weak", "ok", 1, upstream.base_url),
                fake_model("strong", "ok", 70, upstream.base_url),
            ],
            "gateway": {
                "log_url": "none",
                "api_keys": [{"name": name, "sha256": hash_key(key)} for name, key in KEYS.items()],
            },
        }
        with GatewayServer(catalog, router_dir=routers) as gw:
            yield gw


def _cached() -> tuple[int, int]:
    """Vectors in the in-process memo and in the disk cache."""
    import sizewise.embedding as embedding

    disk = embedding.get_cache()
    assert disk is not None
    with sqlite3.connect(Path(disk.path)) as connection:
        rows = connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
    return len(embedding._MEMO), int(rows)


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


def test_a_routed_prompt_leaves_no_trace_in_the_shared_caches(gateway: GatewayServer) -> None:
    before = _cached()
    secret = f"Is my husband hiding money from me? ({uuid.uuid4().hex})"
    for who in ("alice", "bob"):
        response = httpx.post(
            gateway.url + "/route",
            json={"model": "router-pool-0.5", "messages": [{"role": "user", "content": secret}]},
            headers={"authorization": f"Bearer {KEYS[who]}"},
            timeout=60,
        )
        assert response.status_code == 200 and response.json()["sizewise"]["score"] is not None, response.text
    assert _cached() == before  # scored by MiniLM twice, afresh each time
