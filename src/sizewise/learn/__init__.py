"""What every learned thing shares: the :class:`Estimator` contract, the registry of names by kind,
and the safe file format with provenance. Routers (:mod:`sizewise.routers`) and answer scorers
(:mod:`sizewise.cascade.scorers`) build on it; this package imports neither."""

from sizewise.learn.estimator import Estimator
from sizewise.learn.persist import Bundle, load_bundle, read_bundle, read_header, save_bundle, saved_array
from sizewise.learn.registry import Registry, get_registry, kinds, register

__all__ = [
    "Bundle",
    "Estimator",
    "Registry",
    "get_registry",
    "kinds",
    "load_bundle",
    "read_bundle",
    "read_header",
    "register",
    "save_bundle",
    "saved_array",
]
