"""The Open Inference Protocol's binary tensor extension, decoded into ordinary JSON tensors.

A request or response using it is a JSON header of ``Inference-Header-Content-Length`` bytes
followed by raw tensor bytes: each tensor sent that way has no ``data`` but
``parameters.binary_data_size``, and its bytes follow in the order the tensors are listed
(``inputs`` for a request, ``outputs`` for a response). Numbers are little-endian, row-major;
``BOOL`` is one byte; each ``BYTES`` element is a 4-byte little-endian length and its bytes.

KServe's payload logger copies the body but not the ``Inference-Header-Content-Length`` header
(unless it is listed in ``logger.metadataHeaders``), so the header's length is taken from the
header when known and otherwise found by reading the JSON object at the start of the body.

Anything inconsistent (sizes that do not add up to the body, a size that is not a whole number
of elements, element counts that do not match ``shape``, a ``BYTES`` element running past its
tensor, text that is not UTF-8, an unknown datatype) raises ``BinaryTensorError``: the event is
one invalid record, never a server error.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

HEADER = "inference-header-content-length"

NUMERIC_DTYPES: dict[str, str] = {
    "BOOL": "?", "UINT8": "<u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "<i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
_LENGTH = struct.Struct("<I")


class BinaryTensorError(ValueError):
    """The body is not a consistent binary-extension message; the text says why."""


def json_prefix_length(body: bytes, tensors_key: str) -> int | None:
    """Bytes taken by the JSON object at the start of ``body`` when it is an extension header
    (binary data follows it, and one of its ``tensors_key`` tensors has ``binary_data_size``),
    else None: the body is then just not JSON.

    Decoded as Latin-1 so that character offsets are byte offsets whatever the trailing bytes are.
    """
    text = body.decode("latin-1")
    start = len(text) - len(text.lstrip())
    if not text.startswith("{", start):
        return None
    try:
        header, end = json.JSONDecoder().raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    tensors = header.get(tensors_key) if isinstance(header, dict) else None
    if end == len(body) or not isinstance(tensors, list):
        return None
    binary = any(isinstance(t, dict) and isinstance(t.get("parameters"), dict)
                 and "binary_data_size" in t["parameters"] for t in tensors)
    return end if binary else None


def decode(body: bytes, header_length: int, tensors_key: str) -> dict[str, Any]:
    """The message with every binary tensor's ``data`` filled in (a flat list, row-major)."""
    if not 0 < header_length <= len(body):
        raise BinaryTensorError(f"Inference-Header-Content-Length {header_length} is not within "
                                f"the body's {len(body)} bytes")
    try:
        header = json.loads(body[:header_length].decode("utf-8"))
    except (ValueError, RecursionError) as e:
        raise BinaryTensorError(f"the JSON header is not JSON ({type(e).__name__})") from None
    if not isinstance(header, dict):
        raise BinaryTensorError("the JSON header must be an object")
    tensors = header.get(tensors_key)
    if not isinstance(tensors, list):
        raise BinaryTensorError(f'the JSON header has no "{tensors_key}" array')
    raw = memoryview(body)[header_length:]
    offset = 0
    for i, t in enumerate(tensors):
        params = t.get("parameters") if isinstance(t, dict) else None
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is None:
            continue
        assert isinstance(t, dict)
        what = f"{tensors_key}[{i}]"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BinaryTensorError(f"{what}: binary_data_size must be a non-negative integer")
        if "data" in t:
            raise BinaryTensorError(f"{what}: has both data and binary_data_size")
        if offset + size > len(raw):
            raise BinaryTensorError(f"{what}: binary_data_size {size} runs past the end of the body "
                                    f"({len(raw) - offset} bytes left)")
        t["data"] = _values(raw[offset:offset + size], t, what)
        offset += size
    if offset != len(raw):
        raise BinaryTensorError(f"{len(raw) - offset} bytes after the last binary tensor")
    return header


def _values(chunk: memoryview, t: dict[str, Any], what: str) -> list[Any]:
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                              for d in shape):
        raise BinaryTensorError(f"{what}: a binary tensor needs a shape of non-negative integers")
    count = math.prod(shape)
    datatype = str(t.get("datatype", "")).upper()
    if datatype == "BYTES":
        values = _bytes_elements(chunk, what)
    elif datatype in NUMERIC_DTYPES:
        dtype = np.dtype(NUMERIC_DTYPES[datatype])
        if len(chunk) % dtype.itemsize:
            raise BinaryTensorError(f"{what}: {len(chunk)} bytes is not a whole number of {datatype} "
                                    f"({dtype.itemsize} bytes each)")
        values = np.frombuffer(chunk, dtype=dtype).tolist()
    else:
        raise BinaryTensorError(f"{what}: binary datatype {datatype!r} is not supported")
    if len(values) != count:
        raise BinaryTensorError(f"{what}: {len(values)} {datatype} values but shape {shape} needs {count}")
    return values


def _bytes_elements(chunk: memoryview, what: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise BinaryTensorError(f"{what}: truncated BYTES length at byte {pos}")
        (n,) = _LENGTH.unpack_from(chunk, pos)
        pos += 4
        if pos + n > len(chunk):
            raise BinaryTensorError(f"{what}: BYTES element of {n} bytes runs past the tensor")
        try:
            out.append(bytes(chunk[pos:pos + n]).decode("utf-8"))
        except UnicodeDecodeError:
            raise BinaryTensorError(f"{what}: a BYTES element is not UTF-8 text") from None
        pos += n
    return out
