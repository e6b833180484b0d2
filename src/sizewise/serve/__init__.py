"""The request path, one way down: a request's context (:mod:`.context`), the pipeline that filters,
decides and calls (:mod:`.pipeline`, the :class:`~sizewise.serve.pipeline.Engine`), and the one
retry/fallback loop for answers and streams (:mod:`.call`). Nothing here knows HTTP; the gateway
(:mod:`sizewise.gateway`) sits above it.

This ``__init__`` imports nothing, so importing one module costs only that module.
"""
