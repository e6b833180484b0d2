"""The ground floor: the vocabulary every other package shares, importing nothing above it.

* :mod:`.chat`: what a model is asked and answers (``ChatRequest``, ``ChatResult``, ``ChatChunk``, ``BackendError``).
* :mod:`.text`: what a router sees of a conversation (``conversation_text``) and which modalities it holds.
* :mod:`.decision`: what was decided for a request (``Decision``, ``Step``, ``FilterReport``) and the one
  rejection error (``RequestRejected``, which the gateway answers as OpenAI-style JSON).
* :mod:`.table`: ``OutcomeTable``, prompts x models outcomes (numpy + pandas: import it only off the request path),
  and :mod:`.tablefile`, which reads one from a user's CSV / JSON lines / Parquet file.
* :mod:`.prices` and :mod:`.tokens`: the price sheet and offline token counts that cost an outcome.
* :mod:`.requestlog`: the request log's table and the reads the request path makes of it (p95 latency).

This ``__init__`` imports nothing, so ``import sizewise.core.chat`` costs only that module.
"""
