"""Request ids as bytes, and a 64-bit hash of them that is the same in every process.

The join keeps waiting ids as UTF-8 bytes in Arrow binary arrays (no Python object per id) and
remembers joined ids by ``stable_id_hashes`` alone; ingest code can hash the id column it
parsed (an Arrow string array) without building Python strings at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from exporter.foundation.arrays import HashArray, IntArray, ObjArray
from exporter.ingest import compiled_columns


def object_array(values: list[Any]) -> ObjArray:
    """A 1-d object array of the values (``np.array`` would make nested sequences 2-d)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def encode_ids(ids: ObjArray) -> pa.Array:
    """Ids as one arrow binary array (UTF-8; lone surrogates, which JSON allows, kept as such)."""
    try:  # from a list: pyarrow converts a numpy object array about ten times slower
        return pa.array(ids.tolist(), type=pa.string()).cast(pa.binary())
    except (pa.ArrowException, UnicodeEncodeError, TypeError):
        return pa.array([str(i).encode("utf-8", "surrogatepass") for i in ids.tolist()], type=pa.binary())


def decode_ids(arr: pa.Array) -> ObjArray:
    """The ids of ``encode_ids`` back as Python strings."""
    try:
        out: ObjArray = arr.cast(pa.string()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:  # not valid UTF-8: ids with lone surrogates
        out = np.empty(len(arr), dtype=object)
        out[:] = [b.decode("utf-8", "surrogatepass") for b in arr.to_pylist()]
    return out


# --- stable id hashes ---------------------------------------------------------------------------------
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)
_HASH_CHUNK = 1 << 15  # ids hashed per vectorised pass: temporaries stay in cache


def _mix64(z: HashArray) -> HashArray:
    """SplitMix64's finaliser: a bijection of uint64 whose every output bit depends on every input bit."""
    z = z ^ (z >> np.uint64(30))
    z *= _M1
    z ^= z >> np.uint64(27)
    z *= _M2
    z ^= z >> np.uint64(31)
    return z


def stable_id_hashes(ids: pa.Array | pa.ChunkedArray | ObjArray | Sequence[str]) -> HashArray:
    """A 64-bit hash of every id, identical in every process, on every machine, in every release.

    Python's ``hash`` of a string is salted per process, so it cannot be checkpointed; this one
    can, and the remembered joined ids are checkpointed as these hashes. It works on the UTF-8
    bytes (an Arrow ``binary``/``string`` array or chunked column, large or not, is hashed from its
    buffers; anything else is encoded first, lone surrogates kept as ``surrogatepass`` does),
    fully vectorised, with no Python loop per id:
    every id is cut into little-endian 8-byte words (the last one zero-padded), word ``j`` is
    keyed by its position and mixed with SplitMix64's finaliser, and the id's hash is the mixed
    sum of its words and its length. About 40 ns per id on one core with numpy; where
    ``compiled_columns`` is built, the same hash in C, without the GIL (the encoding of a Python
    object array costs more than either).

    It is not cryptographic and not a standard hash: distinct ids collide with probability about
    2^-64 per pair. Where only the hash is kept (ids already joined), a genuinely new id takes an
    existing id's place with probability about n / 2^64 among n remembered ids, and is then taken
    for a duplicate: for a million remembered ids, about one in 1.8e13.
    """
    if isinstance(ids, pa.ChunkedArray):  # a column of a pyarrow Table
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], type=ids.type)
    if isinstance(ids, pa.Array):
        arr = ids
    else:
        arr = encode_ids(ids if isinstance(ids, np.ndarray) else object_array(list(ids)))
    if pa.types.is_string(arr.type):
        arr = arr.cast(pa.binary())
    elif pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_binary())
    if not (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
        raise TypeError(f"ids must be strings or bytes, got an Arrow array of {arr.type}")
    n = len(arr)
    if n <= _HASH_CHUNK or compiled_columns.AVAILABLE:
        return _hash_binary(arr)
    return np.concatenate([_hash_binary(arr.slice(i, _HASH_CHUNK)) for i in range(0, n, _HASH_CHUNK)])


def _hash_binary(arr: pa.Array) -> HashArray:
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    _, offsets_buf, data_buf = arr.buffers()
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    off = np.frombuffer(offsets_buf, dtype=off_type, count=arr.offset + n + 1)[arr.offset:].astype(np.int64)
    if compiled_columns.AVAILABLE:  # the same hash in C, without the GIL
        return compiled_columns.stable_hashes(off, data_buf)
    return _hash_binary_numpy(off, data_buf)


def _hash_binary_numpy(off: IntArray, data_buf: Any) -> HashArray:
    """``_hash_binary`` vectorised with numpy: the reference the C hash is tested against, and the
    hash where the compiled columns are not built (``off``: the ids' int64 offsets into ``data_buf``)."""
    n = off.size - 1
    lo, hi = int(off[0]), int(off[-1])
    # the bytes, copied into whole words with a zero word after them, so any 8 bytes can be read
    words_buf = np.zeros((hi - lo) // 8 + 2, dtype="<u8")
    if hi > lo and data_buf is not None:
        words_buf.view(np.uint8)[: hi - lo] = np.frombuffer(data_buf, dtype=np.uint8, count=hi - lo, offset=lo)
    off -= lo
    lens = np.diff(off)
    if int(lens[0]) > 0 and bool((lens == lens[0]).all()):
        return _hash_fixed_width(words_buf.view(np.uint8)[: hi - lo], n, int(lens[0]))
    nw = (lens + 7) // 8  # words per id
    wend = np.cumsum(nw)
    wstart = wend - nw
    j = np.arange(int(wend[-1]), dtype=np.int64) - np.repeat(wstart, nw)  # word index within its id
    p = np.repeat(off[:-1], nw) + 8 * j  # byte position of each word (unaligned)
    q = p >> 3
    r = ((p & 7) * 8).astype(np.uint64)
    upper = words_buf[q + 1] << (np.uint64(64) - r)
    words = (words_buf[q] >> r) | np.where(r == 0, np.uint64(0), upper)
    left = (np.repeat(lens, nw) - 8 * j).astype(np.uint64)  # bytes of the id from this word on
    words &= np.where(left >= 8, _ALL_ONES, (np.uint64(1) << (np.minimum(left, np.uint64(7)) * np.uint64(8))) - 1)
    mixed = _mix64(words ^ _mix64((j.astype(np.uint64) + np.uint64(1)) * _GOLDEN))
    sums = np.concatenate((np.zeros(1, dtype=np.uint64), np.cumsum(mixed, dtype=np.uint64)))
    return _mix64((sums[wend] - sums[wstart]) + (lens.astype(np.uint64) + np.uint64(1)) * _GOLDEN)


def _hash_fixed_width(data: npt.NDArray[np.uint8], n: int, width: int) -> HashArray:
    """``_hash_binary`` of ``n`` ids of ``width`` bytes each (``data``: their bytes back to back),
    the usual batch (uuids, zero-padded counters): the words are the columns of an ``n`` x words
    matrix and each column's key is computed once, instead of gathering every word by offset.
    Sums are modulo 2**64 either way, so the hashes are the same bits."""
    nw = (width + 7) // 8
    padded = np.zeros((n, nw * 8), dtype=np.uint8)
    padded[:, :width] = data.reshape(n, width)
    words = padded.view("<u8")  # (n, nw): little-endian words, the last one zero-padded
    keys = _mix64((np.arange(nw, dtype=np.uint64) + np.uint64(1)) * _GOLDEN)
    sums = _mix64(words ^ keys).sum(axis=1, dtype=np.uint64)
    length_key = np.full(1, width + 1, dtype=np.uint64) * _GOLDEN  # an array: wraps without a warning
    return _mix64(sums + length_key)
