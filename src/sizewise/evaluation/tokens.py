"""Moved to :mod:`sizewise.core.tokens`; kept so old imports work."""

from sizewise.core.tokens import METHODS as METHODS
from sizewise.core.tokens import TOKENIZER_PACKAGE as TOKENIZER_PACKAGE
from sizewise.core.tokens import count_tokens as count_tokens
from sizewise.core.tokens import count_tokens_cached as count_tokens_cached
from sizewise.core.tokens import resolve_method as resolve_method
