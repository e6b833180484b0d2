"""Real photos that ship in installed packages (scikit-image, matplotlib), as bytes and data URLs."""

from __future__ import annotations

import base64
import io
from pathlib import Path


def photo(name: str, fmt: str = "JPEG") -> bytes:
    """A sample photo encoded as ``fmt``: scikit-image's ``coffee``, ``chelsea``, ``astronaut``..., or
    matplotlib's ``grace_hopper``."""
    import numpy as np
    from PIL import Image

    if name == "grace_hopper":
        import matplotlib

        image = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    else:
        import skimage.data

        image = Image.fromarray(np.asarray(getattr(skimage.data, name)()))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, fmt)
    return buffer.getvalue()


def data_url(data: bytes, mime: str = "image/jpeg") -> str:
    """``data:<mime>;base64,...`` of ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_message(question: str, *urls: str) -> list[dict[str, object]]:
    """One user message: the question, then the images."""
    parts: list[dict[str, object]] = [{"type": "text", "text": question}] if question else []
    parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    return [{"role": "user", "content": parts}]
