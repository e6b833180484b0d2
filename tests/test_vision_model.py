"""The local image classifier: its weights read without torch (and never a pickle's code), checked by
sha256, converted to ONNX once, and its answers on real photos that ship in scikit-image and matplotlib."""

from __future__ import annotations

import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from sizewise.backends import vision
from sizewise.backends.image_input import ImageLimits
from sizewise.backends.imagenet_groups import alternatives, classes_of
from sizewise.backends.torch_legacy import load_state_dict
from sizewise.catalog import embedded
from sizewise.core.decision import RequestRejected
from sizewise.errors import ConfigError
from vision_photos import photo


@pytest.fixture(scope="module")
def classifier() -> vision.ImageClassifier:
    return vision.ImageClassifier()


def _legacy_file(path: Path, state: object, storages: dict[str, np.ndarray]) -> Path:
    """A legacy-format .pth: magic, protocol, system info, the state pickle, storage keys, raw storages."""
    with path.open("wb") as out:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(header, out, protocol=2)
        out.write(state if isinstance(state, bytes) else pickle.dumps(state, protocol=2))
        pickle.dump(list(storages), out, protocol=2)
        for array in storages.values():
            out.write(struct.pack("<q", array.size) + array.astype("<f4").tobytes())
    return path


class _Boom:
    """Pickles as a call of os.system: what a malicious .pth does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_pickle_that_names_code_is_refused_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = _legacy_file(tmp_path / "evil.pth", OrderedDict(weight=_Boom(marker)), {})
    with pytest.raises(ConfigError, match=r"refusing global (posix|os)\.system"):
        load_state_dict(evil)
    assert not marker.exists()


def test_a_state_dict_is_read_with_offsets_and_strides(tmp_path: Path) -> None:
    # Hand-written protocol-2 pickle of what torch writes: OrderedDict of _rebuild_tensor_v2(storage, ...).
    rebuild = pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n"
    storage = pickle.GLOBAL + b"torch\nFloatStorage\n"
    pid = pickle.MARK + pickle.BINUNICODE + struct.pack("<I", 7) + b"storage" + storage
    pid += pickle.BINUNICODE + struct.pack("<I", 1) + b"0" + pickle.BINUNICODE + struct.pack("<I", 3) + b"cpu"
    pid += pickle.BININT1 + bytes([6]) + pickle.NONE + pickle.TUPLE + pickle.BINPERSID
    args = pickle.MARK + pid + pickle.BININT1 + b"\x01"  # offset 1
    args += pickle.BININT1 + b"\x02" + pickle.BININT1 + b"\x02" + pickle.TUPLE2  # size (2, 2)
    args += pickle.BININT1 + b"\x01" + pickle.BININT1 + b"\x02" + pickle.TUPLE2  # stride (1, 2): transposed
    args += pickle.NEWFALSE + pickle.EMPTY_TUPLE + pickle.TUPLE
    body = pickle.PROTO + b"\x02" + pickle.GLOBAL + b"collections\nOrderedDict\n" + pickle.EMPTY_TUPLE + pickle.REDUCE
    body += pickle.BINUNICODE + struct.pack("<I", 1) + b"w" + rebuild + args + pickle.REDUCE + pickle.SETITEM
    body += pickle.STOP
    path = _legacy_file(tmp_path / "small.pth", body, {"0": np.arange(6, dtype=np.float32)})
    state = load_state_dict(path)
    assert state["w"].tolist() == [[1.0, 3.0], [2.0, 4.0]]


def test_a_file_that_is_not_a_legacy_state_dict_is_one_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"PK\x03\x04 not a legacy pickle")
    with pytest.raises(ConfigError, match=r"cannot read .* as a PyTorch state dict"):
        load_state_dict(junk)


def test_weights_that_do_not_match_their_sha256_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path))  # no "verified" marker from earlier runs
    wrong = embedded.EmbeddedModel(**{**embedded.EMBEDDED["vision"].__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(embedded.EMBEDDED, "vision", wrong)
    with pytest.raises(ConfigError, match="expected 0000"):
        vision.onnx_file("vision")
    monkeypatch.setattr(vision, "LABELS_SHA256", "1" * 64)
    with pytest.raises(ConfigError, match="expected 1111"):
        vision.load_labels()


def test_the_onnx_model_is_converted_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIZEWISE_CACHE", str(tmp_path))
    first = vision.onnx_file()
    stamp = first.stat().st_mtime_ns
    assert first.parent == tmp_path / "models" and first.suffix == ".onnx"
    assert vision.onnx_file() == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    first.write_bytes(b"tampered")
    assert vision.onnx_file().stat().st_size > 10_000_000  # a changed file is converted again


@pytest.mark.parametrize(
    ("name", "expected", "at_least"),
    [
        ("coffee", {"espresso"}, 0.85),
        ("chelsea", {"tabby", "tiger cat", "Egyptian cat"}, 0.3),
        ("camera", {"tripod", "reflex camera"}, 0.5),
        ("rocket", {"missile", "projectile", "space shuttle"}, 0.2),
    ],
)
def test_photos_get_their_class(classifier: vision.ImageClassifier, name: str, expected: set, at_least: float) -> None:
    labels = classifier.classify(photo(name))
    assert labels[0].name in expected and labels[0].score >= at_least
    assert len(labels) == 5 and labels[0].score >= labels[-1].score


def test_grace_hopper_wears_a_military_uniform(classifier: vision.ImageClassifier) -> None:
    assert "military uniform" in [label.name for label in classifier.classify(photo("grace_hopper"))[:3]]


def test_the_answer_names_the_top_class() -> None:
    assert vision.answer_text("espresso", 0.951) == "This looks like an espresso (0.95)."
    assert vision.answer_text("tabby", 0.5) == "This looks like a tabby (0.50)."


def test_alternatives_become_class_sets(classifier: vision.ImageClassifier) -> None:
    assert alternatives("Is this a cat or a dog?") == ("cat", "dog")
    assert alternatives("is it an espresso, or a latte") == ("espresso", "latte")
    assert alternatives("What is this?") is None
    names = classifier.names
    assert classes_of("dogs", names) == list(range(151, 269)) and classes_of("cat", names) == list(range(281, 286))
    assert [names[i].split(",")[0] for i in classes_of("espresso", names)] == ["espresso"]
    assert classes_of("latte", names) == []
    probs = classifier.probabilities(photo("chelsea"))
    assert probs[classes_of("cat", names)].sum() > 0.8 > probs[classes_of("dog", names)].sum()


def test_a_bomb_is_refused_before_its_pixels_are_decoded() -> None:
    small = vision.ImageClassifier(limits=ImageLimits(max_pixels=100_000))
    with pytest.raises(RequestRejected) as caught:
        small.classify(photo("coffee", "PNG"))  # 400x600 = 240,000 pixels declared
    assert caught.value.status == 413 and "at most 100000 pixels" in caught.value.message
    assert small._session is None  # refused before the model was even loaded


def test_a_sideways_phone_photo_is_turned_upright(classifier: vision.ImageClassifier) -> None:
    import io

    from PIL import Image

    sideways = Image.open(io.BytesIO(photo("coffee"))).rotate(90, expand=True)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: "turn 90 degrees clockwise to view"
    tagged, plain = io.BytesIO(), io.BytesIO()
    sideways.save(tagged, "JPEG", exif=exif.tobytes())
    sideways.save(plain, "JPEG")
    assert classifier.classify(tagged.getvalue())[0].score > 0.8 > classifier.classify(plain.getvalue())[0].score


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK"])
def test_every_pixel_mode_is_classified(classifier: vision.ImageClassifier, mode: str) -> None:
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(photo("camera"))).convert(mode).resize((1200, 1200))  # also shrunk by reduce()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG" if mode == "CMYK" else "PNG")
    assert classifier.classify(buffer.getvalue())[0].name == "tripod"


def test_calibration_picks_the_threshold_above_the_best_photo_left_out() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench/
    from bench._modalities_vision import calibrate

    assert calibrate([0.96, 0.95, 0.58, 0.49], [True, True, False, True]) == 0.6
    assert calibrate([0.9, 0.3], [True, True]) == 0.0  # every answer right: answer everything
    assert calibrate([0.9, 0.3], [False, False]) == 0.95  # strictly above every wrong answer


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP"])
def test_every_accepted_format_is_read(classifier: vision.ImageClassifier, fmt: str) -> None:
    assert classifier.classify(photo("coffee", fmt))[0].name == "espresso"
