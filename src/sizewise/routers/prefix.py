"""What an embedding router reads of a prompt: the part that varies from prompt to prompt.

Real traffic often wraps every prompt in the same text: a system prompt, few-shot examples, a closing
instruction. MiniLM reads only the first 256 tokens, so a long shared prefix gives every prompt the
same embedding (and a router the same score); a mean-of-tokens embedding is diluted by it. ``fit``
learns the leading and trailing lines that most training prompts share (:func:`learn_shared`);
scoring drops them where a prompt has them, then keeps the tail of what is left when it is longer
than the encoder reads, since the question comes last in a prompt and a conversation's last user
turn last in its text (:func:`varying_part`). Generic: nothing here knows any dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

#: A line run counts as shared when at least this share of the training prompts has it.
MIN_SHARE = 0.5
#: Shorter shared runs (a lone "Answer:" line, an empty line) are left alone: they cost nothing.
MIN_CHARS = 32
#: About MiniLM's 256-token window in English text; longer remainders keep their last characters.
MINILM_TAIL_CHARS = 1200


def _shared_lines(split: list[list[str]], min_share: float) -> list[str]:
    """The longest run of leading lines shared by ``min_share`` of the texts, leaving each at least one line."""
    need = min_share * len(split)
    members = list(range(len(split)))
    run: list[str] = []
    while members:
        depth = len(run)
        counts = Counter(split[i][depth] for i in members if len(split[i]) > depth + 1)
        if not counts:
            break
        line, count = counts.most_common(1)[0]
        if count < need:
            break
        run.append(line)
        members = [i for i in members if len(split[i]) > depth + 1 and split[i][depth] == line]
    return run


def learn_shared(texts: Sequence[str], min_share: float = MIN_SHARE) -> tuple[str, str]:
    """(prefix, suffix): the leading and trailing whole lines most of ``texts`` share ("" when none)."""
    if len(texts) < 2:
        return "", ""
    split = [text.splitlines(keepends=True) for text in texts]
    prefix = "".join(_shared_lines(split, min_share))
    prefix = prefix if len(prefix) >= MIN_CHARS else ""
    rest = [lines[prefix.count("\n") :] if "".join(lines).startswith(prefix) else lines for lines in split]
    ends = [[line.rstrip("\n") for line in reversed(lines)] for lines in rest]  # the last line has no "\n"
    suffix = "\n".join(reversed(_shared_lines(ends, min_share)))
    suffix = suffix if len(suffix) >= MIN_CHARS else ""
    return prefix, suffix


def varying_part(texts: Sequence[str], prefix: str, suffix: str, tail_chars: int | None = None) -> list[str]:
    """``texts`` without the learned shared ``prefix``/``suffix`` (where present), cut to their last
    ``tail_chars`` characters (at a word boundary) when longer."""
    out = []
    for text in texts:
        if prefix and text.startswith(prefix) and len(text) > len(prefix):
            text = text[len(prefix) :]
        if suffix and text.endswith(suffix) and len(text) > len(suffix):
            text = text[: -len(suffix)].rstrip("\n")
        if tail_chars is not None and len(text) > tail_chars:
            tail = text[-tail_chars:]
            space = tail.find(" ")
            text = tail[space + 1 :] if 0 <= space < 40 else tail
        out.append(text)
    return out


def tail_chars(embedding: str) -> int | None:
    """How much of a prompt's end the encoder ``embedding`` should get (None: all of it)."""
    return MINILM_TAIL_CHARS if embedding == "minilm" else None


def readable(prompts: Sequence[str], shared: tuple[str, str] | None, embedding: str) -> list[str]:
    """Checked ``prompts`` as the encoder should read them (see the module docstring). ``None``: a router
    file written before this existed, whose stored embeddings saw whole prompts; they still do."""
    from sizewise.routers._learned import check_prompts

    texts = check_prompts(prompts)
    return texts if shared is None else varying_part(texts, *shared, tail_chars=tail_chars(embedding))


def shared_to_meta(shared: tuple[str, str] | None) -> dict[str, list[str]]:
    """The router file's record of ``shared`` (nothing for a file that predates it)."""
    return {} if shared is None else {"shared": list(shared)}


def shared_from_meta(meta: dict[str, object]) -> tuple[str, str] | None:
    """The (prefix, suffix) a router file recorded; None for files written before it existed."""
    if "shared" not in meta:
        return None
    value = meta["shared"]
    if not isinstance(value, list | tuple) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        raise ValueError(f"its shared prompt text is not a [prefix, suffix] pair of strings ({value!r})")
    return str(value[0]), str(value[1])
