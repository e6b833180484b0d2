"""Cascades: the small model answers first, a scorer judges the answer, a bigger model takes over when needed.

* :mod:`sizewise.cascade.scorers`: answer scorers (``logprob``, ``consistency``, ``verifier``, ``answer-classifier``).
* :mod:`sizewise.cascade.policy`: ladders, thresholds and calibration on recorded outcome tables (and hybrid routing).
* :mod:`sizewise.cascade.graders`: numeric / choice / exact-match graders.
* :mod:`sizewise.cascade.collect`: ``sizewise collect``'s resumable recorder.
* The gateway's live ``cascade-<scorer>`` policy is :mod:`sizewise.policy.cascading` (request path).
"""
