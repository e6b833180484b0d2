"""Fetch a dataset's source files from their public URLs into the cache, laid out like the shared data folder.

Each file comes from the same pinned commit as ``shared/data`` (see its SOURCES.md), so a fetched copy
loads to the same table. Nothing is fetched unless asked for: ``load_dataset(name, source="url")`` or
:func:`fetch_dataset`. Base URLs can be pointed elsewhere (a mirror, or a local server in tests) with
``base_urls`` or ``$SIZEWISE_ROUTELLM_URL`` / ``$SIZEWISE_MMLU_PRO_URL``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sizewise.errors import DataError, UnknownNameError
from sizewise.progress import Progress

ROUTELLM_COMMIT = "0b64fdafe049e596a3f5657c219329f24af24198"
MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
BASE_URLS = {
    # GitHub raw URLs of the folders that hold the files; the local layout is <source>/<relative path>.
    "routellm": f"https://raw.githubusercontent.com/lm-sys/RouteLLM/{ROUTELLM_COMMIT}/routellm/evals",
    "mmlu-pro": f"https://raw.githubusercontent.com/TIGER-AI-Lab/MMLU-Pro/{MMLU_PRO_COMMIT}/eval_results",
}
ENV_VARS = {"routellm": "SIZEWISE_ROUTELLM_URL", "mmlu-pro": "SIZEWISE_MMLU_PRO_URL"}


def dataset_files(name: str) -> list[tuple[str, str]]:
    """``(source, relative path)`` of every file that dataset ``name`` reads."""
    from sizewise.evaluation.loaders import mmlupro, routellm

    files = {
        "routellm-mmlu": [("routellm", path) for path in routellm.mmlu_files()],
        "routellm-gsm8k": [("routellm", path) for path in routellm.GSM8K_FILES],
        "routellm-mtbench": [("routellm", path) for path in routellm.MTBENCH_FILES],
        "mmlu-pro": [("mmlu-pro", mmlupro.zip_name(model)) for model in mmlupro.MODELS],
    }
    if name not in files:
        raise UnknownNameError(f"no public source for dataset {name!r}; known: {', '.join(files)}")
    return files[name]


def default_fetch_root() -> Path:
    """Where fetched files go: ``<cache>/data`` (same layout as the shared data folder)."""
    from sizewise.paths import cache_dir

    return cache_dir() / "data"


def fetch_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    base_urls: Mapping[str, str] | None = None,
    force: bool = False,
    client: Any = None,
    timeout: float = 60.0,
) -> Path:
    """Download every file of dataset ``name`` into ``root`` (default :func:`default_fetch_root`); return ``root``.

    Files already there are kept unless ``force``. ``client`` is an optional ``httpx.Client``.
    A failed download raises :class:`DataError` naming the URL and leaves no partial file.
    """
    import httpx

    root = Path(root) if root is not None else default_fetch_root()
    urls = {source: os.environ.get(ENV_VARS[source], url) for source, url in BASE_URLS.items()}
    urls.update(base_urls or {})
    owned = client is None
    client = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        for source, relative in dataset_files(name):
            target = root / source / relative
            if target.is_file() and not force:
                continue
            url = f"{urls[source].rstrip('/')}/{relative}"
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            try:
                with client.stream("GET", url) as response:
                    if response.status_code != 200:
                        raise DataError(f"could not fetch {url}: HTTP {response.status_code}")
                    size = response.headers.get("content-length")
                    total = int(size) if size and size.isdigit() else None
                    with partial.open("wb") as handle, Progress(total, f"fetch {relative}", "B", scale=True) as bar:
                        for chunk in response.iter_bytes():
                            handle.write(chunk)
                            bar.update(len(chunk))
            except httpx.HTTPError as exc:
                partial.unlink(missing_ok=True)
                raise DataError(f"could not fetch {url}: {type(exc).__name__}: {exc}") from None
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            partial.replace(target)
    finally:
        if owned:
            client.close()
    return root
