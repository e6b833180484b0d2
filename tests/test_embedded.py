"""Embedded models: located through package metadata (never imported), assembled once, sha256-checked."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from sizewise.catalog import embedded
from sizewise.catalog.embedded import EmbeddedModel
from sizewise.errors import ConfigError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def make_dist(site: Path, name: str, chunk: bytes) -> None:
    """A minimal installed distribution with one raw chunk under ``<pkg>/data/``."""
    package = name.replace("-", "_")
    (site / package / "data").mkdir(parents=True)
    (site / package / "data" / "part.bin").write_bytes(chunk)
    info = site / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text(f"{package}/__init__.py,,\n{package}/data/part.bin,,\n{info.name}/METADATA,,\n")


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[EmbeddedModel, bytes]:
    site = tmp_path / "site"
    chunks = [os.urandom(3000) for _ in range(3)]
    # Names sort differently from concatenation order (part10 < part2) to prove the packages' order is kept.
    names = ["fake-model-part1", "fake-model-part2", "fake-model-part10"]
    for name, chunk in zip(names, chunks, strict=True):
        make_dist(site, name, chunk)
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(chunks)
    model = EmbeddedModel("fake", "fake-1b", "fake.gguf", hashlib.sha256(whole).hexdigest(), tuple(names), "1.0")
    monkeypatch.setitem(embedded.EMBEDDED, "fake", model)
    return model, whole


def test_chunks_are_assembled_in_package_order_once(fake: tuple[EmbeddedModel, bytes], cache: Path) -> None:
    model, whole = fake
    path = embedded.model_path("fake")
    assert path == cache / "models" / "fake.gguf" and path.read_bytes() == whole
    assert embedded.is_verified(path, model.sha256)
    stamp = path.stat().st_mtime_ns
    assert embedded.model_path("fake-1b") == path and path.stat().st_mtime_ns == stamp  # not rebuilt
    assert "fake_model_part1" not in sys.modules  # located through metadata, never imported


def test_verified_marker_avoids_rehashing_until_the_file_changes(
    fake: tuple[EmbeddedModel, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = embedded.model_path("fake")
    calls: list[Path] = []
    real = embedded.file_sha256
    monkeypatch.setattr(embedded, "file_sha256", lambda p: calls.append(p) or real(p))
    embedded.model_path("fake")
    assert calls == []
    before = path.stat().st_mtime_ns
    path.write_bytes(b"x" + path.read_bytes()[1:])  # same size, new mtime: must be hashed again
    # A coarse filesystem clock can give the rewrite the same mtime; make the change visible.
    os.utime(path, ns=(before + 1_000_000_000, before + 1_000_000_000))
    with pytest.raises(ConfigError, match=r"embedded model 'fake': .* has sha256 [0-9a-f]{64}, expected"):
        embedded.model_path("fake")
    assert calls == [path]


def test_hash_mismatch_while_assembling(fake: tuple[EmbeddedModel, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = fake
    monkeypatch.setitem(embedded.EMBEDDED, "fake", EmbeddedModel(**{**model.__dict__, "sha256": "0" * 64}))
    with pytest.raises(ConfigError, match="expected 0000"):
        embedded.model_path("fake")
    assert not list((Path(os.environ["SIZEWISE_CACHE"]) / "models").glob("fake.gguf*"))  # no partial file left


def test_missing_package_is_named(fake: tuple[EmbeddedModel, bytes], monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = fake
    broken = EmbeddedModel(**{**model.__dict__, "packages": (*model.packages, "fake-model-part11")})
    monkeypatch.setitem(embedded.EMBEDDED, "fake", broken)
    with pytest.raises(ConfigError, match=r"needs package fake-model-part11==1.0, which is not installed; .*pip"):
        embedded.model_path("fake")
    assert embedded.status("fake")["installed"] is False


def test_unknown_embedded_key() -> None:
    with pytest.raises(ConfigError, match="unknown embedded model 'huge'"):
        embedded.model_path("huge")


def test_installed_packages_hold_the_three_models() -> None:
    small, big = embedded.source_files("small"), embedded.source_files("big")
    assert [p.name for p in small] == [f"part{i:02d}.bin" for i in range(1, 7)]
    assert [p.name for p in big] == [f"part{i:02d}.bin" for i in range(1, 23)]
    assert 3e8 < sum(p.stat().st_size for p in small) < 6e8
    assert 0.9e9 < sum(p.stat().st_size for p in big) < 1.3e9


def test_tiny_model_is_verified_in_place(cache: Path) -> None:
    path = embedded.model_path("tiny")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and "site-packages" in str(path)
    assert path.read_bytes()[:4] == b"GGUF"
    assert embedded.status("tiny")["verified"] is True
    assert not (cache / "models" / path.name).exists()  # used in place, not copied


def test_models_cli_install_list_and_errors() -> None:
    from typer.testing import CliRunner

    from sizewise.cli.main import app

    runner = CliRunner()
    installed = runner.invoke(app, ["models", "install", "tiny"])
    assert installed.exit_code == 0 and "tiny" in installed.output and "ok" in installed.output
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0
    lines = [line for line in listed.output.splitlines() if "embedded" in line]
    names = [line.split()[0] for line in lines]
    assert names[:3] == ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] and "whisper-tiny.en" in names
    assert "embedded tiny: verified" in lines[0]
    bad = runner.invoke(app, ["models", "install", "huge"])
    assert bad.exit_code != 0 and "unknown embedded model 'huge'" in str(bad.exception)
