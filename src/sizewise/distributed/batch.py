"""``sizewise collect --ray`` and ``sizewise eval --ray``: the same work as the local run, spread over Ray tasks.

* eval: every (router, fold) fit is one task (:func:`ray_fold_map`, given to
  :func:`sizewise.evaluation.harness.evaluate`); the table goes to the object store once. Folds, seeds and
  the pooling of fold ranks stay in the driver, so the numbers are the local run's.
* collect: the questions still to answer are cut into contiguous chunks, handed to one actor per CPU that
  holds the catalog's backends (a local model loads once per actor) and runs
  :func:`sizewise.cascade.collect.collect` on each chunk; the driver appends the rows in question order, so
  the file is the local run's (answers and grades; latencies are measured anew).
"""

from __future__ import annotations

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


class _Collector:
    """A Ray actor holding the catalog's backends for ``names``: the local models load once per actor, not
    once per chunk. Async, so every chunk runs on the one event loop its HTTP clients were made on."""

    def __init__(self, catalog: Any, names: list[str]) -> None:
        from sizewise.backends.factory import make_backend

        self.backends = {name: make_backend(catalog.get(name), catalog) for name in names}

    async def answer(
        self, items: list[Item], earlier: list[dict[str, Any]], options: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Answer ``items`` in a private store seeded with their ``earlier`` rows; the new rows."""
        from sizewise.cascade.collect import RowStore, collect

        with tempfile.TemporaryDirectory() as tmp:
            store = RowStore(Path(tmp) / "rows.jsonl")
            try:
                for row in earlier:
                    store.append(row)
                start = len(store.rows)
                await collect(items, self.backends, store, progress=False, **options)
                return store.rows[start:]
            finally:
                store.close()

    async def close(self) -> None:
        """Close the backends (a local model's worker process ends with it)."""
        for backend in self.backends.values():
            await backend.aclose()


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
    """Like :func:`sizewise.cascade.collect.collect` over Ray; rows land in ``store`` in question order.

    One :class:`_Collector` actor per cluster CPU (one CPU each) answers chunks of the questions
    (``tasks`` chunks; default four per CPU, at most one per question), handed out by Ray's ``ActorPool``.
    """
    import ray
    from ray.util import ActorPool

    from sizewise.progress import Progress

    todo = [item for item in items if scorers or any((item.prompt_id, m) not in store.done for m in names)]
    if not todo:
        return 0
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    count = min(tasks or 4 * cpus, len(todo))
    chunks = [list(part) for part in np.array_split(np.array(todo, dtype=object), count)]
    options = {"grader": grader, "max_tokens": max_tokens, "scorers": list(scorers)}
    catalog_ref = ray.put(catalog)
    actor = ray.remote(num_cpus=1, max_concurrency=1)(_Collector)  # type: ignore[call-overload]  # Ray's stubs lag
    actors = [actor.remote(catalog_ref, names) for _ in range(min(cpus, count))]
    earlier = {id(chunk): [r for r in store.rows if r["prompt_id"] in {i.prompt_id for i in chunk}] for chunk in chunks}
    added = 0
    try:
        answers = ActorPool(actors).map(lambda a, chunk: a.answer.remote(chunk, earlier[id(chunk)], options), chunks)
        with Progress(len(chunks), "collect --ray", "chunks") as bar:
            for rows in answers:  # in chunk order: the file reads as the local run's
                for row in rows:
                    store.append(row)
                    added += 1
                bar.update(1)
    finally:
        ray.get([a.close.remote() for a in actors])
        for a in actors:
            ray.kill(a)
    return added
