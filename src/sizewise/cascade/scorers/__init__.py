"""Answer scorers for cascades: logprob, consistency, verifier, answer-classifier."""

from sizewise.cascade.scorers.base import Answer, Scorer, load_scorer, make_scorer, scorer_class, scorer_names

__all__ = ["Answer", "Scorer", "load_scorer", "make_scorer", "scorer_class", "scorer_names"]
