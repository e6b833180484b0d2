"""What a task student reads of a text: TF-IDF word and character n-grams, and/or an embedding.

The TF-IDF transform is done here rather than by scikit-learn's vectoriser: the learned vocabulary and idf
weights are plain data (saved as JSON + arrays, no pickle), one text is transformed in tens of microseconds
instead of paying scikit-learn's per-call validation overhead (a student must answer in well under a
millisecond), and cross-validation counts each text's terms once (:func:`analyse`) for every fold. The
tokenisation is scikit-learn's analyzer and the weighting its formula (smooth idf, sublinear tf, L2 per block).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: The featurisations a student may use. ``tfidf``: word 1-2-grams + character 2-5-grams (within
#: words); ``static``: the static MiniLM embedding (sub-millisecond); ``minilm``: the full encoder
#: (~50 ms a text: too slow for a sub-millisecond student, measured for comparison); ``+`` joins them.
FEATURES = ("tfidf", "static", "minilm", "tfidf+static", "tfidf+minilm")
#: Blocks as (kind, analyzer, n-gram range); each block is L2-normalised on its own.
TFIDF_BLOCKS: tuple[tuple[str, tuple[int, int]], ...] = (("word", (1, 2)), ("char_wb", (2, 5)))
#: A term must occur in this many training texts to enter the vocabulary (drops one-off noise, keeps files small).
MIN_DF = 2
#: Weight of the embedding block against the TF-IDF blocks when joined (each block has unit length).
EMBEDDING_WEIGHT = 1.0


def _analyzer(kind: str, ngrams: tuple[int, int]) -> Callable[[str], list[str]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer=kind, ngram_range=ngrams, lowercase=True).build_analyzer()  # type: ignore[no-any-return]


class TfidfBlock:
    """One TF-IDF block: a vocabulary (term -> column) and its idf weights."""

    def __init__(self, kind: str, ngrams: tuple[int, int], vocabulary: dict[str, int], idf: np.ndarray) -> None:
        self.kind, self.ngrams, self.vocabulary, self.idf = kind, ngrams, vocabulary, idf
        self.analyze = _analyzer(kind, ngrams)

    @classmethod
    def fit(cls, counts: Sequence[Counter[str]], kind: str, ngrams: tuple[int, int]) -> TfidfBlock:
        """Vocabulary (terms in ``MIN_DF`` texts, sorted) and smooth idf ``ln((1 + n) / (1 + df)) + 1``, as
        scikit-learn's vectoriser computes them, from each text's term counts (:func:`analyse`)."""
        df: Counter[str] = Counter()
        for text_counts in counts:
            df.update(text_counts.keys())
        min_df = MIN_DF if len(counts) >= 20 else 1  # tiny data: every term counts
        terms = sorted(term for term, n in df.items() if n >= min_df)
        frequency = np.array([df[t] for t in terms], dtype=np.float64)
        idf = (np.log((1.0 + len(counts)) / (1.0 + frequency)) + 1.0).astype(np.float32)
        return cls(kind, ngrams, {t: i for i, t in enumerate(terms)}, idf)

    def counts(self, text: str) -> Counter[str]:
        """The text's term counts in this block."""
        return Counter(self.analyze(text))

    def row(self, text: str | Counter[str]) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of one text (or its counts): sublinear tf times idf, L2-normalised."""
        counts = self.counts(text) if isinstance(text, str) else text
        pairs = [(self.vocabulary[t], c) for t, c in counts.items() if t in self.vocabulary]
        if not pairs:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        columns = np.fromiter((p[0] for p in pairs), dtype=np.int64, count=len(pairs))
        tf = np.fromiter((1.0 + math.log(p[1]) for p in pairs), dtype=np.float32, count=len(pairs))
        values = tf * self.idf[columns]
        return columns, values / max(float(np.linalg.norm(values)), 1e-12)

    def to_meta(self) -> dict[str, Any]:
        """The vocabulary as JSON (terms in column order); ``idf`` goes to the arrays."""
        terms = [""] * len(self.vocabulary)
        for term, column in self.vocabulary.items():
            terms[column] = term
        return {"kind": self.kind, "ngrams": list(self.ngrams), "terms": terms}

    @classmethod
    def from_meta(cls, meta: dict[str, Any], idf: np.ndarray) -> TfidfBlock:
        terms = meta["terms"]
        if not isinstance(terms, list) or len(terms) != len(idf) or not all(isinstance(t, str) for t in terms):
            raise ValueError("a TF-IDF block's terms do not match its idf weights")
        ngrams = tuple(int(n) for n in meta["ngrams"])
        if meta["kind"] not in ("word", "char_wb") or len(ngrams) != 2:
            raise ValueError(f"unknown TF-IDF block {meta['kind']!r}")
        return cls(str(meta["kind"]), (ngrams[0], ngrams[1]), {t: i for i, t in enumerate(terms)}, idf)


#: Each text's term counts, one Counter per TF-IDF block: what every fold's vocabulary and rows are built
#: from, so cross-validation reads each text once instead of twice per fold.
Analysed = list[list[Counter[str]]]


def analyse(texts: Sequence[str]) -> Analysed:
    """The term counts of each text in each block of :data:`TFIDF_BLOCKS`."""
    analyzers = [_analyzer(kind, ngrams) for kind, ngrams in TFIDF_BLOCKS]
    return [[Counter(analyze(text)) for analyze in analyzers] for text in texts]


def parts(features: str) -> list[str]:
    """The featurisation's parts, e.g. ``["tfidf", "static"]``."""
    return features.split("+")


def embedding_of(name: str, texts: Sequence[str]) -> np.ndarray:
    """Unit-length embeddings of ``texts`` by ``static`` or ``minilm`` (imported lazily)."""
    if name == "static":
        from sizewise.embedding.static import embed_static

        return np.asarray(embed_static(list(texts)), dtype=np.float32)
    from sizewise.embedding import embed

    return np.asarray(embed(list(texts), progress=False), dtype=np.float32)


class Featuriser:
    """Texts -> one sparse matrix: the TF-IDF blocks (if any), then the embedding (if any)."""

    def __init__(self, features: str, blocks: list[TfidfBlock]) -> None:
        self.features, self.blocks = features, blocks
        self.embedding = next((p for p in parts(features) if p != "tfidf"), None)
        self.width = sum(len(b.idf) for b in blocks) + (_embedding_dim(self.embedding) if self.embedding else 0)

    @classmethod
    def fit(cls, features: str, texts: Sequence[str], counts: Analysed | None = None) -> Featuriser:
        """Learn the TF-IDF blocks' vocabularies; ``counts`` (from :func:`analyse`) saves re-reading the texts."""
        if "tfidf" not in parts(features):
            return cls(features, [])
        counts = analyse(texts) if counts is None else counts
        return cls(features, [TfidfBlock.fit([c[b] for c in counts], k, n) for b, (k, n) in enumerate(TFIDF_BLOCKS)])

    def transform(self, texts: Sequence[str], counts: Analysed | None = None, dense: np.ndarray | None = None) -> Any:
        """A ``scipy.sparse.csr_matrix`` of shape ``(len(texts), width)``; ``counts`` as for :meth:`fit`,
        ``dense`` the texts' embeddings if already computed (:func:`embedding_of`)."""
        from scipy import sparse

        if self.blocks and counts is None:
            counts = analyse(texts)
        rows, columns, values = [], [], []
        for i in range(len(texts)):
            offset = 0
            for b, block in enumerate(self.blocks):
                cols, vals = block.row(counts[i][b])  # type: ignore[index]
                rows.append(np.full(len(cols), i))
                columns.append(cols + offset)
                values.append(vals)
                offset += len(block.idf)
        if self.embedding is not None:
            dense = (embedding_of(self.embedding, texts) if dense is None else dense) * EMBEDDING_WEIGHT
            offset = self.width - dense.shape[1]
            grid = np.indices(dense.shape)
            rows.append(grid[0].ravel())
            columns.append(grid[1].ravel() + offset)
            values.append(dense.ravel())
        data = (np.concatenate(values), (np.concatenate(rows), np.concatenate(columns))) if values else None
        shape = (len(texts), self.width)
        return (
            sparse.csr_matrix(data, shape=shape, dtype=np.float32)
            if data
            else sparse.csr_matrix(shape, dtype=np.float32)
        )

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(columns, values) of one text, without building a matrix: the single-request fast path."""
        cols, vals, offset = [], [], 0
        for block in self.blocks:
            c, v = block.row(text)
            cols.append(c + offset)
            vals.append(v)
            offset += len(block.idf)
        if self.embedding is not None:
            dense = embedding_of(self.embedding, [text])[0] * EMBEDDING_WEIGHT
            cols.append(np.arange(len(dense)) + offset)
            vals.append(dense)
        if not cols:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(cols), np.concatenate(vals)

    def state(self) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        return [b.to_meta() for b in self.blocks], {f"idf_{i}": b.idf for i, b in enumerate(self.blocks)}

    @classmethod
    def from_state(cls, features: str, meta: list[dict[str, Any]], arrays: dict[str, np.ndarray]) -> Featuriser:
        if not isinstance(meta, list):
            raise ValueError("the TF-IDF blocks are not a list")
        blocks = [TfidfBlock.from_meta(m, np.asarray(arrays[f"idf_{i}"], dtype=np.float32)) for i, m in enumerate(meta)]
        return cls(features, blocks)


def _embedding_dim(name: str) -> int:
    if name == "static":
        from sizewise.embedding.static import DIM

        return int(DIM)
    from sizewise.embedding.model import DIM as MINILM_DIM

    return int(MINILM_DIM)
