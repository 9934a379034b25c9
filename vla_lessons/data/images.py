"""Camera frames as PNG bytes: lossless, and the same bytes every time.

Introduced in lesson 01.

LeRobot stores camera streams as mp4 video; video codecs are lossy and their output depends on
the encoder build, so this course stores each frame as a PNG inside the parquet file instead
(the ``datasets.Image()`` feature). PNG is lossless: a frame read back equals the frame written,
bit for bit. Pillow writes no timestamp into a PNG, and the compression settings are fixed here,
so the same frame always gives the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

#: zlib level used for every frame: Pillow's default. On 96 px sim frames it gives ~2.7 kB and
#: ~1.2 ms per frame; level 9 saves ~9 % and is ~9x slower, level 1 is 25 % bigger.
PNG_COMPRESS_LEVEL = 6


def check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Check that ``image`` is an RGB frame: an ``(H, W, 3)`` ``uint8`` array; return it.

    Introduced in lesson 01. Raises ``TypeError``/``ValueError`` saying what was expected.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape (H, W, 3) and dtype uint8, "
                        f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8 (values 0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name} must have shape (H, W, 3) (RGB, channels last), got {image.shape}")
    return image


def encode_png(image: np.ndarray) -> bytes:
    """Encode one ``(H, W, 3)`` ``uint8`` RGB frame as PNG bytes (deterministic).

    Introduced in lesson 01.
    """
    check_image(image)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(
        buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    """Decode PNG bytes into an ``(H, W, 3)`` ``uint8`` RGB array.

    Introduced in lesson 01. Raises ``ValueError`` when the bytes are not a readable image.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"PNG data must be bytes, got {type(data).__name__}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            return np.array(img if img.mode == "RGB" else img.convert("RGB"))  # a writable copy
    except (OSError, SyntaxError) as err:  # Pillow's errors for truncated or foreign data
        raise ValueError(f"not a readable PNG image ({len(data)} bytes): {err}") from err
