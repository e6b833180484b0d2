"""The image half of ``bench/modalities.py``: EfficientNet-Lite0 (ONNX, 1 thread) on the photos that ship in
installed packages (scikit-image, matplotlib, scikit-learn), each labelled by hand with the ImageNet classes
that name it, or with none when no ImageNet class does (a moon, a page of text, cells, a logo).

Measured: per-image latency (decode + resize + network) p50/p99, peak memory of a process that loads the
model and classifies every photo (RSS high-water mark minus the RSS before loading), top-1 accuracy on the
photos an ImageNet class names, the share of naming questions answered locally at the catalog's threshold
and how many of those answers were right; the threshold that calibration picks (the lowest top-1 at which
the answers given are at least ``TARGET_PRECISION`` right, photos with no ImageNet class counting as wrong);
and the accuracy of the question route (``sizewise.serve.vision_intent``) on ``tests/data/vision_questions.json``.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TARGET_PRECISION = 0.9
#: (package, file, ImageNet classes that name it; empty: no ImageNet class does).
PHOTOS: list[tuple[str, str, tuple[str, ...]]] = [
    ("skimage", "coffee.png", ("espresso", "cup", "coffee mug")),
    ("skimage", "chelsea.png", ("tabby", "tiger cat", "Egyptian cat")),
    ("skimage", "camera.png", ("tripod", "reflex camera", "Polaroid camera")),
    ("skimage", "rocket.jpg", ("missile", "projectile", "space shuttle")),
    ("skimage", "motorcycle_left.png", ("moped", "motor scooter")),
    ("skimage", "clock_motion.png", ("wall clock", "analog clock")),
    ("skimage", "astronaut.png", ()),
    ("matplotlib", "grace_hopper.jpg", ("military uniform",)),
    ("sklearn", "china.jpg", ("palace", "pagoda", "monastery")),
    ("sklearn", "flower.jpg", ("daisy",)),
    ("skimage", "moon.png", ()),
    ("skimage", "text.png", ()),
    ("skimage", "page.png", ()),
    ("skimage", "coins.png", ()),
    ("skimage", "hubble_deep_field.jpg", ()),
    ("skimage", "retina.jpg", ()),
    ("skimage", "brick.png", ()),
    ("skimage", "grass.png", ()),
    ("skimage", "gravel.png", ()),
    ("skimage", "ihc.png", ()),
    ("skimage", "cell.png", ()),
    ("skimage", "logo.png", ()),
    ("skimage", "color.png", ()),
    ("matplotlib", "logo2.png", ()),
]


def photo_path(package: str, name: str) -> Path:
    """Where a photo of the set is installed."""
    if package == "skimage":
        import skimage.data

        return Path(skimage.data.__file__).parent / name
    if package == "matplotlib":
        import matplotlib

        return Path(matplotlib.get_data_path()) / "sample_data" / name
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / name


def photo_bytes(package: str, name: str) -> bytes:
    """The photo as a JPEG (what a client would send), RGB."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(photo_path(package, name)).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def calibrate(scores: list[float], right: list[bool], target: float = TARGET_PRECISION) -> float:
    """The threshold that answers the most photos while >= ``target`` of the answers are right: just above the
    best photo left out, on the 0.05 grid (0.0 when every answer may be given)."""
    order = [int(i) for i in np.argsort(scores)[::-1]]
    keep, hits = 0, 0
    for count, i in enumerate(order, start=1):
        hits += right[i]
        if hits / count >= target:
            keep = count
    if keep == len(order):
        return 0.0
    return round(min(1.0, float(np.floor(scores[order[keep]] * 20 + 1e-9)) / 20 + 0.05), 2)  # strictly above it


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process, in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _memory_child() -> None:
    """Run in a child process: peak RSS growth of loading the classifier and classifying every photo."""
    import gc

    sys.path.insert(0, str(ROOT / "src"))
    from sizewise.backends.vision import ImageClassifier

    images = [photo_bytes(p, n) for p, n, _ in PHOTOS]
    gc.collect()
    before = _rss_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the RSS now
    classifier = ImageClassifier()
    for data in images:
        classifier.classify(data)
    peak = _rss_mb("VmHWM")
    print(json.dumps({"peak_rss_delta_mb": round(peak - before, 1), "peak_rss_mb": round(peak, 1)}))


def _gateway_latency(data: bytes, requests: int) -> list[float]:
    """Seconds per chat request answered by the classifier through a live gateway (the openai client)."""
    import base64

    import openai

    sys.path.insert(0, str(ROOT / "bench"))
    from _serve import serve_in_thread
    from sizewise.catalog import load_catalog
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    spec = load_catalog(None).spec.model_dump()  # the built-in catalog; its LLMs load only if called
    app = create_app(CatalogSpec.model_validate({**spec, "gateway": {**spec["gateway"], "log_url": "none"}}))
    url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": url}}]
    times = []
    with serve_in_thread(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        for i in range(requests + 1):
            start = time.perf_counter()
            answer = client.chat.completions.create(model="sizewise", messages=[{"role": "user", "content": content}])
            assert answer.model_extra["sizewise"]["model"] == "efficientnet-lite0", answer.model_extra["sizewise"]
            if i:  # the first request loads the model
                times.append(time.perf_counter() - start)
    return times


def _intent_accuracy() -> tuple[int, int]:
    from sizewise.serve.vision_intent import classifiable

    data = json.loads((ROOT / "tests" / "data" / "vision_questions.json").read_text())
    cases = [(q, True) for q in data["name"]] + [(q, False) for q in data["open"]]
    return sum(classifiable(q)[0] == named for q, named in cases), len(cases)


def run(args: Any) -> dict[str, Any]:
    """Measure the classifier; ``args.repeats`` timed runs per photo (``args.quick``: 1)."""
    from sizewise.backends.vision import ImageClassifier
    from sizewise.catalog import load_catalog

    threshold = float(load_catalog(None).get("efficientnet-lite0").settings.get("threshold", 0.6))
    repeats = 1 if getattr(args, "quick", False) else max(1, int(getattr(args, "repeats", 5)))
    classifier = ImageClassifier()
    classifier.classify(photo_bytes(*PHOTOS[0][:2]))  # load (and convert once) outside the timings
    times, scores, right, named = [], [], [], []
    for package, name, classes in PHOTOS:
        data = photo_bytes(package, name)
        for _ in range(repeats):
            start = time.perf_counter()
            labels = classifier.classify(data)
            times.append(time.perf_counter() - start)
        scores.append(labels[0].score)
        right.append(labels[0].name in classes)
        named.append(bool(classes))
    child = subprocess.run([sys.executable, __file__, "--memory"], capture_output=True, text=True, check=True)
    memory = json.loads(child.stdout.strip().splitlines()[-1])
    gateway = _gateway_latency(photo_bytes("skimage", "coffee.png"), 3 if getattr(args, "quick", False) else 20)
    answered = [s >= threshold for s in scores]
    answered_right = sum(a and r for a, r in zip(answered, right, strict=True))
    intent_right, intent_total = _intent_accuracy()
    row = {
        "model": "efficientnet-lite0 (onnxruntime, 1 thread)",
        "p50 ms": round(1000 * float(np.percentile(times, 50)), 1),
        "p99 ms": round(1000 * float(np.percentile(times, 99)), 1),
        "gateway p50 ms": round(1000 * float(np.percentile(gateway, 50)), 1),
        "peak RSS delta MB": memory["peak_rss_delta_mb"],
        "process peak RSS MB": memory["peak_rss_mb"],
        "top-1 (ImageNet photos)": f"{sum(right)}/{sum(named)}",
        "threshold": threshold,
        "answered locally": f"{sum(answered)}/{len(PHOTOS)}",
        "right when answered": f"{answered_right}/{sum(answered)}",
        "calibrated threshold": calibrate(scores, right),
        "question route": f"{intent_right}/{intent_total}",
    }
    per_photo = [
        {"photo": n, "classes": list(c), "top1_right": r, "top1_score": round(s, 3)}
        for (_, n, c), r, s in zip(PHOTOS, right, scores, strict=True)
    ]
    notes = [
        f"{len(PHOTOS)} photos that ship in scikit-image, matplotlib and scikit-learn, {sum(named)} of them named by "
        f"an ImageNet class, sent as JPEG; {repeats} timed runs each (decode, resize, network) on this machine's CPU.",
        f"Calibrated threshold: the most photos answered with >= {TARGET_PRECISION:.0%} of the answers right (a photo "
        "no ImageNet class names counts as wrong), on the 0.05 grid strictly above the best photo left out.",
        "Gateway p50: 'What is in this picture?' with the coffee photo through a live gateway (built-in catalog, "
        "the openai client), answered by the classifier. Memory: a child process that loads the model and "
        "classifies every photo. Question route: naming vs open questions in tests/data/vision_questions.json.",
    ]
    return {"rows": [row], "notes": notes, "photos": per_photo}


if __name__ == "__main__":
    if sys.argv[1:] == ["--memory"]:
        _memory_child()
    else:
        from types import SimpleNamespace

        print(json.dumps(run(SimpleNamespace(quick=True, repeats=1)), indent=1))
