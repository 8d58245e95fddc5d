"""A tiny PNG encoder and checker, so the fake image endpoints send real images without Pillow."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from functools import lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE_RGB = 2
_BIT_DEPTH = 8


def _chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and the CRC over type + data."""
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


@lru_cache(maxsize=64)
def encode_png(width: int, height: int, rgb: tuple[int, int, int] = (0, 0, 0)) -> bytes:
    """A solid-colour 8-bit RGB PNG; cached because the fake sends the same few images repeatedly."""
    if width <= 0 or height <= 0:
        raise ValueError(f"PNG size must be positive, got {width}x{height}")
    row = b"\x00" + bytes(rgb) * width  # filter byte 0 (None) then the pixels
    ihdr = struct.pack(">IIBBBBB", width, height, _BIT_DEPTH, _COLOR_TYPE_RGB, 0, 0, 0)
    idat = zlib.compress(row * height, 6)
    return PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@dataclass(frozen=True)
class PngInfo:
    """What a test needs to know about a decoded PNG."""

    width: int
    height: int
    first_pixel: tuple[int, int, int]


def read_png(data: bytes) -> PngInfo:
    """Check signature, chunk CRCs and pixel data length of an 8-bit RGB PNG; raise ValueError if broken."""
    if not data.startswith(PNG_SIGNATURE):
        raise ValueError("not a PNG: bad signature")
    pos = len(PNG_SIGNATURE)
    header: tuple[int, ...] | None = None
    idat = bytearray()
    seen_end = False
    while pos < len(data):
        if pos + 8 > len(data):
            raise ValueError("truncated chunk header")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc_bytes = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc_bytes) != 4:
            raise ValueError(f"truncated {kind!r} chunk")
        if struct.unpack(">I", crc_bytes)[0] != zlib.crc32(kind + body) & 0xFFFFFFFF:
            raise ValueError(f"bad CRC in {kind!r} chunk")
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            seen_end = True
            break
        pos += 12 + length
    if header is None or not seen_end:
        raise ValueError("missing IHDR or IEND")
    width, height, depth, color_type = header[0], header[1], header[2], header[3]
    if depth != _BIT_DEPTH or color_type != _COLOR_TYPE_RGB:
        raise ValueError(f"only 8-bit RGB is supported, got depth {depth} colour type {color_type}")
    raw = zlib.decompress(bytes(idat))
    if len(raw) != height * (1 + 3 * width):
        raise ValueError("pixel data has the wrong length")
    if raw[0] != 0:
        raise ValueError("only filter type 0 is supported")
    return PngInfo(width=width, height=height, first_pixel=(raw[1], raw[2], raw[3]))
