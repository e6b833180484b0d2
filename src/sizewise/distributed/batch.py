"""``sizewise collect --ray`` and ``sizewise eval --ray``: the same work as the local run, spread over Ray tasks.

* eval: every (router, fold) fit is one task (:func:`ray_fold_map`, given to
  :func:`sizewise.evaluation.harness.evaluate`); the table goes to the object store once. Folds, seeds and
  the pooling of fold ranks stay in the driver, so the numbers are the local run's.
* collect: the questions still to answer are cut into contiguous chunks, one task each; a task builds the
  catalog's backends and runs :func:`sizewise.cascade.collect.collect` on its chunk; the driver appends the
  rows in question order, so the file is the local run's (answers and grades; latencies are measured anew).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sizewise.cascade.collect import Item, RowStore
    from sizewise.cascade.scorers import Scorer
    from sizewise.core.table import OutcomeTable
    from sizewise.routers.base import Router


def _fit_fold_task(
    data: OutcomeTable, weak: str, strong: str, router: Router, train_idx: np.ndarray, test_idx: np.ndarray
) -> np.ndarray:
    from sizewise.evaluation.harness import fit_fold

    return fit_fold(router, data, train_idx, test_idx, weak, strong)


def ray_fold_map(
    data: OutcomeTable, weak: str, strong: str, jobs: list[tuple[Router, np.ndarray, np.ndarray]]
) -> list[np.ndarray]:
    """Each (router, train rows, test rows) fit as one Ray task (one CPU each); scores in ``jobs`` order."""
    import ray

    table = ray.put(data)  # once, not once per task
    fit = ray.remote(num_cpus=1)(_fit_fold_task)
    refs = [fit.remote(table, weak, strong, router, train, test) for router, train, test in jobs]
    return list(ray.get(refs))


def _collect_chunk(
    items: list[Item],
    catalog: Any,
    names: list[str],
    earlier: list[dict[str, Any]],
    options: dict[str, Any],
) -> list[dict[str, Any]]:
    """One task: answer ``items`` with ``names`` in a private store seeded with their ``earlier`` rows."""
    from sizewise.backends.factory import make_backend
    from sizewise.cascade.collect import RowStore, collect

    with tempfile.TemporaryDirectory() as tmp:
        store = RowStore(Path(tmp) / "rows.jsonl")
        for row in earlier:
            store.append(row)
        start = len(store.rows)
        backends = {name: make_backend(catalog.get(name), catalog) for name in names}

        async def run() -> None:
            try:
                await collect(items, backends, store, progress=False, **options)
            finally:
                for backend in backends.values():
                    await backend.aclose()

        try:
            asyncio.run(run())
        finally:
            store.close()
        return store.rows[start:]


def collect_on_ray(
    items: Sequence[Item],
    catalog: Any,
    names: list[str],
    store: RowStore,
    *,
    grader: str,
    max_tokens: int,
    scorers: Sequence[Scorer] = (),
    tasks: int | None = None,
) -> int:
    """Like :func:`sizewise.cascade.collect.collect` over Ray tasks; rows land in ``store`` in question order.

    ``tasks``: how many chunks (default: four per CPU of the cluster, at most one per question).
    """
    import ray

    from sizewise.progress import Progress

    todo = [item for item in items if scorers or any((item.prompt_id, m) not in store.done for m in names)]
    if not todo:
        return 0
    count = tasks or 4 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    chunks = [list(part) for part in np.array_split(np.array(todo, dtype=object), min(count, len(todo)))]
    options = {"grader": grader, "max_tokens": max_tokens, "scorers": list(scorers)}
    catalog_ref = ray.put(catalog)
    task = ray.remote(num_cpus=1)(_collect_chunk)
    refs = []
    for chunk in chunks:
        ids = {item.prompt_id for item in chunk}
        earlier = [row for row in store.rows if row["prompt_id"] in ids]
        refs.append(task.remote(chunk, catalog_ref, names, earlier, options))
    added = 0
    with Progress(len(refs), "collect --ray", "chunks") as bar:
        for ref in refs:  # in order: the file reads as the local run's
            for row in ray.get(ref):
                store.append(row)
                added += 1
            bar.update(1)
    return added
