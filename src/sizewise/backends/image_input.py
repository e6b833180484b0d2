"""Images in chat requests: find the image parts, decode data URLs and open images with bounded memory.

Every check happens before pixels are decoded: the encoded size (``max_bytes``), the number of images
(``max_images``), the format (what Pillow reads of the header) and the pixel count the header declares
(``max_pixels``, which stops a decompression bomb: a few KB of PNG that would decode to gigabytes).
Failures are :class:`RequestRejected` (an OpenAI-style 400 or 413), never a traceback.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sizewise.core.decision import RequestRejected

#: Formats a photo arrives in; anything else (TIFF, PSD, EPS: large decoders, rarely photos) is refused.
FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP"})
IMAGE_PARTS = ("image_url", "image", "input_image")
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*)(?P<b64>;base64)?,", re.I)


@dataclass(frozen=True)
class ImageLimits:
    """Per-request caps (the vision model's catalog settings)."""

    max_images: int = 8
    max_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 40_000_000


@dataclass(frozen=True)
class ImageRef:
    """One image part: its bytes (a data URL) or the URL to fetch."""

    index: int
    data: bytes | None = None
    url: str | None = None


def _reject(message: str, code: str = "invalid_image", status: int = 400) -> RequestRejected:
    return RequestRejected(status, message, code, param="messages")


def _part_url(part: dict[str, Any]) -> str | None:
    value = part.get("image_url", part.get("url"))
    if isinstance(value, dict):
        value = value.get("url")
    return value if isinstance(value, str) else None


def decode_data_url(url: str, index: int, limits: ImageLimits) -> bytes:
    """The bytes of a base64 ``data:image/...`` URL, refusing one larger than ``max_bytes`` before decoding."""
    match = _DATA_URL.match(url)
    if match is None or not match.group("b64"):
        raise _reject(f"image {index}: a data URL must be data:image/<type>;base64,<data>")
    mime = (match.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise _reject(f"image {index}: data URL of type {mime!r} is not an image", "unsupported_image_format")
    payload = url[match.end() :]
    if len(payload) * 3 // 4 > limits.max_bytes:
        raise _reject(f"image {index} is larger than {limits.max_bytes} bytes", "image_too_large", 413)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise _reject(f"image {index}: the data URL is not valid base64") from None


def image_refs(messages: Sequence[dict[str, Any]], limits: ImageLimits) -> list[ImageRef]:
    """Every image part of the conversation, in order: data URLs decoded, other URLs left to fetch."""
    refs: list[ImageRef] = []
    for message in messages:
        content = message.get("content")
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, dict) or part.get("type") not in IMAGE_PARTS:
                continue
            index = len(refs)
            if index >= limits.max_images:
                raise _reject(f"too many images: at most {limits.max_images} per request", "too_many_images")
            url = _part_url(part)
            if url is None:
                raise _reject(f"image {index} has no url (expected image_url.url)")
            if url.startswith("data:"):
                refs.append(ImageRef(index, data=decode_data_url(url, index, limits)))
            elif url.startswith(("http://", "https://")):
                refs.append(ImageRef(index, url=url))
            else:
                raise _reject(f"image {index}: url must be a data: URL or http(s) URL")
    return refs


def open_image(data: bytes, index: int, limits: ImageLimits) -> Any:
    """A Pillow image of ``data``, header read and checked, pixels not yet decoded."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.max_bytes:
        raise _reject(f"image {index} is larger than {limits.max_bytes} bytes", "image_too_large", 413)
    try:
        image = Image.open(io.BytesIO(data), formats=sorted(FORMATS))
    except Image.DecompressionBombError:  # Pillow's own cap (twice MAX_IMAGE_PIXELS), checked from the header
        raise _reject(f"image {index} declares too many pixels", "image_too_large", 413) from None
    except UnidentifiedImageError:
        raise _reject(
            f"image {index} is not a readable image (supported: {', '.join(sorted(FORMATS))})",
            "unsupported_image_format",
        ) from None
    except (OSError, ValueError, SyntaxError) as error:  # Pillow raises these for broken headers
        raise _reject(f"image {index} is corrupt: {error}") from None
    width, height = image.size
    if width * height > limits.max_pixels or width < 1 or height < 1:
        raise _reject(
            f"image {index} is {width}x{height} pixels; at most {limits.max_pixels} pixels", "image_too_large", 413
        )
    return image


def decode_rgb(data: bytes, index: int, limits: ImageLimits, size: int = 256) -> Any:
    """The image as RGB pixels, upright, decoded at a reduced scale where the format allows (JPEG's draft mode)."""
    from PIL import Image, ImageOps

    image = open_image(data, index, limits)
    try:
        image.draft("RGB", (size, size))  # JPEG decodes at 1/2..1/8 scale: less memory and time
        image.load()
        if image.mode not in ("RGB", "RGBA", "L", "LA", "I", "F"):  # modes Image.reduce does not take (P, 1, CMYK)
            image = image.convert("RGB")
        factor = min(image.size) // size
        if factor >= 2:  # shrink at once (box filter), so the full-size pixels are the only large copy
            image = image.reduce(factor)
        # A phone photo stores its pixels sideways and says so in EXIF: the classifier must see it upright.
        image = ImageOps.exif_transpose(image) or image
        return image if image.mode == "RGB" else image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise _reject(f"image {index} is corrupt: {error}") from None
