"""``sizewise scorer fit|list``: fit a cascade scorer on recorded answers and save it where the gateway looks.

``fit`` reads a ``sizewise collect`` file (each answer's text, correctness, token logprobs and, with
``collect --scorers``, the verifier's verdicts and extra samples), fits the named scorer through the registry
(``--param KEY=VALUE`` as for routers), reports its out-of-fold AUC, and writes the file that
``model="cascade-<name>"`` loads: ``<router dir>/scorer-<name>.zip`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sizewise.cli.params import PARAM_HELP, parse_params
from sizewise.cli.router_dir import ConfigOption, RouterDirOption, resolve_router_dir
from sizewise.errors import ConfigError, DataError

scorer_app = typer.Typer(help="Fit and list the cascade's answer scorers.", no_args_is_help=True)

# What each built-in scorer reads from a recorded answer, and how a collect file comes to hold it.
NEEDS = {
    "logprob": ("logprobs", "token logprobs: collect with a backend that returns them (local models do)"),
    "consistency": ("samples", "extra samples: run `sizewise collect ... --scorers consistency`"),
    "verifier": ("verdict", "verifier verdicts: run `sizewise collect ... --scorers verifier`"),
}
FOLDS = 5


@scorer_app.command("fit")
def fit_command(
    scorer: Annotated[str, typer.Option("--scorer", help="Scorer name (see `sizewise scorer list`).")],
    table: Annotated[str, typer.Option("--table", help="A `sizewise collect` file (answers with their correctness).")],
    model: Annotated[
        list[str] | None, typer.Option("--model", help="Fit on this model's answers (repeatable); default: all.")
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", help=f"Scorer {PARAM_HELP}")] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Where to save it; default <router dir>/scorer-<name>.zip, which the gateway reads."
        ),
    ] = None,
    router_dir: RouterDirOption = None,
    config: ConfigOption = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the folds of the out-of-fold AUC.")] = 0,
) -> None:
    """Fit a cascade scorer on recorded answers, report its out-of-fold AUC and save it for the gateway."""
    import numpy as np

    from sizewise.cascade.scorers import make_scorer

    estimator = make_scorer(scorer, **parse_params(param))  # unknown name or parameter: one line naming it
    answers, correct, models = _answers(table, model, scorer)
    try:
        estimator.fit(answers, correct)
    except TypeError as error:  # a --param of the wrong type
        raise ConfigError(f"scorer {scorer!r}: bad parameter ({error})") from None
    auc = _oof_auc(estimator, answers, correct, seed)
    path = out if out is not None else resolve_router_dir(router_dir, config) / f"scorer-{scorer}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    provenance = {"fitted_on": {"table": str(table), "models": models, "answers": len(answers)}}
    saved = estimator.save(path, provenance=provenance)
    right = float(np.mean(correct))
    typer.echo(
        f"fitted {scorer} on {len(answers)} answers of {', '.join(models)} ({right:.1%} right); "
        f"{f'out-of-fold AUC {auc:.3f} ({FOLDS}-fold)' if auc is not None else 'no AUC: too few answers'} -> {saved}"
    )
    if out is None or path.name == f"scorer-{scorer}.zip":
        typer.echo(f"model 'cascade-{scorer}' uses it in a gateway started with --router-dir {path.parent}")


def _answers(table: str, models: list[str] | None, scorer: str) -> tuple[list[Any], Any, list[str]]:
    """The recorded answers of ``models`` (default: all) and their correctness, checked for what ``scorer`` reads."""
    import numpy as np

    from sizewise.cascade.scorers import Answer
    from sizewise.cli.tables import is_collect_file, read_table

    if not Path(table).is_file():
        raise ConfigError(f"--table {table}: no such file (record answers with `sizewise collect --out FILE`)")
    if not is_collect_file(table):
        raise DataError(
            f"{table} is not a `sizewise collect` file: a scorer judges answers, so it needs their texts "
            "(run `sizewise collect --out FILE` on labelled questions)"
        )
    data = read_table(table)
    names = list(models or data.models)
    answers: list[Any] = []
    labels: list[float] = []
    meta = data.meta
    for name in names:
        quality = data.column(name)  # an unknown model is a one-line error listing the table's models
        texts = data.column(name, "responses")
        for i in np.flatnonzero(~np.isnan(quality)):
            answers.append(
                Answer(
                    data.texts[i], str(texts[i] or ""), model=name, logprobs=meta["logprobs"][name][i],
                    samples=meta["samples"][name][i], verdict=meta["verdicts"][name][i],
                )
            )  # fmt: skip
            labels.append(float(quality[i]))
    if not answers:
        raise DataError(f"{table} holds no graded answers of {', '.join(names)}")
    needed = NEEDS.get(scorer)
    if needed is not None and all(getattr(a, needed[0]) is None for a in answers):
        raise DataError(f"scorer {scorer!r} reads {needed[1]}; {table} has none for {', '.join(names)}")
    return answers, np.asarray(labels), names


def _oof_auc(estimator: Any, answers: list[Any], correct: Any, seed: int) -> float | None:
    """AUC of out-of-fold scores against right/wrong (a clone fitted per fold); None when it cannot be measured."""
    import numpy as np
    from sklearn.metrics import roc_auc_score

    labels = (np.asarray(correct) >= 0.5).astype(int)
    if len(answers) < 2 * FOLDS or labels.min() == labels.max():
        return None
    order = np.random.default_rng(seed).permutation(len(answers))
    scores = np.zeros(len(answers))
    for fold in np.array_split(order, FOLDS):
        train = np.setdiff1d(order, fold)
        model = estimator.clone().fit([answers[i] for i in train], correct[train])
        scores[fold] = model.score([answers[i] for i in fold])
    return float(roc_auc_score(labels, scores))


@scorer_app.command("list")
def list_command() -> None:
    """Every registered scorer: whether it must be fitted and whether it calls models."""
    from sizewise.cascade.scorers import scorer_class, scorer_names

    for name in scorer_names():
        cls = scorer_class(name)
        fit = "needs fit" if cls.needs_fit else "works unfitted"
        calls = ", calls models" if cls.calls_models else ""
        typer.echo(f"{name:<20} {fit}{calls}")


def register(app: typer.Typer) -> None:
    """Add ``scorer`` to the CLI."""
    app.add_typer(scorer_app, name="scorer")
