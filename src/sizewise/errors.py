"""Errors that sizewise raises on bad input, each with a message that names the problem.

The CLI prints ``str(error)`` on one line and exits 2; the gateway turns them into
OpenAI-style JSON errors with a 4xx status.
"""

from __future__ import annotations


class SizewiseError(Exception):
    """Base class: a problem the user can fix (bad file, bad config, bad request)."""


class DataError(SizewiseError):
    """A data file or outcome table is missing, malformed or inconsistent."""


class ConfigError(SizewiseError):
    """A catalog/config file is invalid or contradicts itself."""


class UnknownModelError(SizewiseError):
    """A model name that is not in the table or catalog."""


class UnknownNameError(SizewiseError):
    """A name that is not in a registry (router, scorer, dataset, backend)."""


class RouterFileError(SizewiseError):
    """A saved router/scorer file is corrupt, of another kind, or of another version."""


class NotFittedError(SizewiseError):
    """An estimator was used before ``fit``."""
