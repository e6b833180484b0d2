"""Task-model catalog entries (``kind: task``): each mistake is one line naming the entry and field, at start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from fakes import fake_model
from sizewise.catalog.loader import parse_catalog
from sizewise.catalog.schema import CatalogSpec
from sizewise.errors import ConfigError
from sizewise.gateway.app import create_app

UPSTREAM = "http://127.0.0.1:9"  # never called: these catalogs fail before any request


def catalog(task: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A catalog with a teacher ``big`` and the task entry, whose ``settings`` default to a valid online task."""
    settings = {"labels": ["yes", "no"], "teacher": "big", **task.pop("settings", {})}
    entry = {"name": "overruling", "kind": "task", "backend": "task", "context_window": 512, **task}
    entry["settings"] = {k: v for k, v in settings.items() if v is not None}
    return {"models": [fake_model("big", "up-big", 100, UPSTREAM), entry], **extra}


def load(data: dict[str, Any], tmp_path: Path) -> Any:
    return parse_catalog(yaml.safe_dump(data, sort_keys=False), source="tasks.yaml", base_dir=tmp_path)


def test_a_valid_task_entry_loads(tmp_path: Path) -> None:
    loaded = load(catalog({}), tmp_path)
    assert loaded.get("overruling").settings["teacher"] == "big"


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"settings": {"teacher": "gpt-9"}}, "teacher 'gpt-9' is not a catalog model"),
        ({"settings": {"teacher": "overruling"}}, "teacher 'overruling' is a 'task' model, not a chat model"),
        ({"settings": {"labels": []}}, "field 'settings.labels': List should have at least 2 items"),
        ({"settings": {"labels": ["yes"]}}, "List should have at least 2 items"),
        ({"settings": {"labels": ["Yes", "yes"]}}, "labels must differ"),
        ({"settings": {"labels": None}}, "field 'settings.labels': required field is missing"),
        ({"settings": {"teacher": None}}, "field 'settings.teacher': required field is missing"),
        ({"settings": {"route": "legal"}}, "route 'legal' is not a catalog route (routes: none)"),
        ({"settings": {"student": "missing.zip"}}, "student file"),
        ({"settings": {"online": False}}, "must learn online"),
        ({"settings": {"target_agreement": 1.0}}, "settings.target_agreement"),
        ({"settings": {"audit_share": -0.1}}, "settings.audit_share"),
        ({"settings": {"min_examples": 2}}, "settings.min_examples"),
        ({"settings": {"unsure": "router"}}, "settings.unsure"),
        ({"settings": {"lables": ["a", "b"]}}, "settings.lables': unknown key"),
        ({"backend": "openai"}, "backend openai"),
        ({"kind": "llm"}, "needs both 'kind: task' and 'backend: task'"),
    ],
)
def test_a_bad_task_entry_is_one_line_naming_it(tmp_path: Path, task: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(catalog(task), tmp_path)
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "tasks.yaml line" in text and "'overruling'" in text


def test_the_gateway_checks_task_references_without_the_loader(tmp_path: Path) -> None:
    """``create_app`` on an in-memory spec (no loader): the engine checks the teacher and route itself."""
    for settings, message in [
        ({"teacher": "gpt-9"}, "teacher 'gpt-9' is not a catalog model"),
        ({"route": "legal"}, "route 'legal' is not a catalog route"),
        ({"student": str(tmp_path / "none.zip")}, "cannot load student"),
    ]:
        spec = CatalogSpec.model_validate(catalog({"settings": settings}, gateway={"log_url": "none"}))
        with pytest.raises(ConfigError, match=message):
            create_app(spec)


def test_a_corrupt_or_foreign_student_file_fails_at_start_up(tmp_path: Path) -> None:
    from sizewise.distill.student import TaskStudent

    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 not really a zip")
    spec = CatalogSpec.model_validate(catalog({"settings": {"student": str(corrupt)}}, gateway={"log_url": "none"}))
    with pytest.raises(ConfigError, match=r"cannot load student .*corrupt\.zip"):
        create_app(spec)
    texts = [f"is {word} {i} up?" for i in range(20) for word in ("rise", "fall")]
    other = TaskStudent(folds=2).fit(texts, ["up" if "rise" in t else "down" for t in texts]).save(tmp_path / "s.zip")
    spec = CatalogSpec.model_validate(catalog({"settings": {"student": str(other)}}, gateway={"log_url": "none"}))
    with pytest.raises(ConfigError, match=r"answers \['down', 'up'\], which are not in labels"):
        create_app(spec)


def test_a_corrupt_online_state_file_fails_at_start_up(tmp_path: Path) -> None:
    state = tmp_path / "state.zip"
    state.write_text("{}")
    spec = CatalogSpec.model_validate(catalog({"settings": {"state": str(state)}}, gateway={"log_url": "none"}))
    with pytest.raises(ConfigError, match="cannot read its online student"):
        create_app(spec)


def test_a_teacher_without_its_api_key_is_skipped_not_a_start_up_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine leaves a model whose key variable is unset out of routing; its task still starts (and leaves
    unsure requests to the policy until the teacher can be called)."""
    monkeypatch.delenv("SIZEWISE_TEST_TEACHER_KEY", raising=False)
    data = catalog({}, gateway={"log_url": "none"})
    data["models"][0]["settings"]["api_key_env"] = "SIZEWISE_TEST_TEACHER_KEY"
    data["models"].append(fake_model("small", "up-small", 1, UPSTREAM))
    app = create_app(CatalogSpec.model_validate(data))
    engine = app.state.gateway.engine
    assert "big" in engine.unavailable and "overruling" in engine.tasks.tasks


@pytest.mark.parametrize(
    ("aliases", "message"),
    [({"maybe": ["perhaps"]}, "aliases name 'maybe', which is not a label"), ({"yes": ["no"]}, "would mean both")],
)
def test_bad_aliases_fail_at_start_up_naming_the_task(aliases: dict[str, list[str]], message: str) -> None:
    for online in (True, False):
        settings = {"aliases": aliases, "online": online, "student": None if online else "unused.zip"}
        spec = CatalogSpec.model_validate(catalog({"settings": settings}, gateway={"log_url": "none"}))
        with pytest.raises(ConfigError, match=f"task model 'overruling': .*{message}"):
            create_app(spec)


def test_unquoted_yes_no_labels_in_yaml_get_a_hint(tmp_path: Path) -> None:
    """YAML reads ``labels: [yes, no]`` as two booleans; the error says so instead of "not a valid string"."""
    text = (
        "models:\n"
        "  - {name: big, backend: openai, context_window: 512, settings: {base_url: 'http://127.0.0.1:9'}}\n"
        "  - name: overruling\n    kind: task\n    backend: task\n    context_window: 512\n"
        "    settings: {labels: [yes, no], teacher: big}\n"
    )
    with pytest.raises(ConfigError, match=r'line 7: .*settings.labels.*quote labels \("yes"\)'):
        parse_catalog(text, source="tasks.yaml", base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"settings.aliases.*quote labels"):
        parse_catalog(text.replace("[yes, no]", "['yes', 'no'], aliases: {'yes': [true]}"), base_dir=tmp_path)
    loaded = parse_catalog(text.replace("[yes, no]", "['yes', 'no']"), base_dir=tmp_path)
    assert loaded.get("overruling").settings["labels"] == ["yes", "no"]
