"""Test helpers: reading the CLI's PNG files and writing small checkpoints, with NumPy only."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_gray_png(path: Path) -> np.ndarray:
    """An 8-bit grayscale, non-interlaced PNG as uint8 (height, width)."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, color, _, _, interlace = header
    assert (depth, color, interlace) == (8, 0, 0), f"{path}: not 8-bit grayscale"
    raw = zlib.decompress(idat)
    out = np.zeros((height, width), dtype=np.uint8)
    prev = np.zeros(width, dtype=np.uint8)
    for y in range(height):
        line = np.frombuffer(raw, dtype=np.uint8, count=width + 1, offset=y * (width + 1))
        kind, row = line[0], line[1:].copy()
        if kind == 1:  # Sub: running sum modulo 256
            row = np.cumsum(row, dtype=np.uint8)
        elif kind == 2:  # Up
            row = row + prev
        elif kind in (3, 4):  # Average, Paeth: byte by byte
            r, p = row.tolist(), prev.tolist()
            for x in range(width):
                left = r[x - 1] if x else 0
                up_left = p[x - 1] if x else 0
                pred = (left + p[x]) // 2 if kind == 3 else _paeth(left, p[x], up_left)
                r[x] = (r[x] + pred) & 255
            row = np.array(r, dtype=np.uint8)
        out[y] = row
        prev = row
    return out


def write_safetensors(path: Path, tensors: dict) -> None:
    """float32 arrays by name in the safetensors format (8-byte header size, JSON, data)."""
    header, chunks, offset = {}, [], 0
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        chunks.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    Path(path).write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))
