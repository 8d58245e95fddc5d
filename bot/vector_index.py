"""The in-memory vectors of one embedding space, searched by cosine similarity.

Chosen by measurement (`bench/bench_search.py`, 1536 dims, 2 cores shared with other work): a
brute-force float32 product is exact and takes ~3 ms over 10k rows but 31-77 ms (p50) over 100k: it
is bound by memory bandwidth, 586 MiB read per query. So up to `EXACT_SEARCH_MAX_ROWS` the search is
exact; past it, the sign bits of every vector (1 bit per dimension, 32x smaller) pick the
`candidates` nearest by Hamming distance and those are scored exactly in float32: 8.5-28 ms (p50)
over 100k, with the exact top-5 found for every benchmark query. Returned scores are always exact
cosines. (sqlite-vec was not measured: its vec0 tables scan the same float32 bytes brute force,
and it would need a native extension loaded into every connection.)

Mutations never change an array a running search may hold: rows are appended past the searched
length, growth and removal build new arrays. So a search can run in a worker thread on a snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

EXACT_SEARCH_MAX_ROWS = 20_000
PREFILTER_CANDIDATES = 400  # rows rescored exactly after the sign-bit prefilter (at least 40 per hit)
MIN_CAPACITY_ROWS = 64
GROWTH_FACTOR = 1.5
BLOCK_ROWS = 8192  # rows per step of the bulk work: temporaries stay in cache, memory stays flat

FloatMatrix = npt.NDArray[np.float32]


class DimensionMismatchError(ValueError):
    """A vector of another dimension was offered to an index: spaces never mix."""


@dataclass(frozen=True, slots=True)
class VectorMatch:
    chunk_id: int
    entry_id: int
    score: float


def _code_words(dims: int) -> int:
    return (dims + 63) // 64


def sign_codes(matrix: FloatMatrix) -> npt.NDArray[np.uint64]:
    """One bit per dimension (positive or not), packed into 64-bit words per row."""
    packed = np.packbits(matrix > 0, axis=1)
    width = _code_words(matrix.shape[1]) * 8
    if packed.shape[1] != width:
        packed = np.pad(packed, ((0, 0), (0, width - packed.shape[1])))
    return np.ascontiguousarray(packed).view(np.uint64)


def normalised(matrix: npt.ArrayLike, dims: int) -> FloatMatrix:
    """Rows as float32 unit vectors (zero rows stay zero); refuses another dimension."""
    array = np.asarray(matrix, dtype=np.float32)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2 or array.shape[1] != dims:
        raise DimensionMismatchError(f"expected vectors of {dims} dimensions, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class VectorIndex:
    """Unit vectors with their chunk and entry ids; add, remove an entry's rows, top-k search."""

    def __init__(
        self,
        dims: int,
        *,
        exact_max_rows: int = EXACT_SEARCH_MAX_ROWS,
        candidates: int = PREFILTER_CANDIDATES,
    ) -> None:
        if dims <= 0:
            raise ValueError("dims must be positive")
        self.dims = dims
        self.exact_max_rows = exact_max_rows
        self.candidates = candidates
        self._size = 0
        self._vectors: FloatMatrix = np.empty((0, dims), dtype=np.float32)
        self._codes: npt.NDArray[np.uint64] = np.empty((0, _code_words(dims)), dtype=np.uint64)
        self._chunk_ids: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)
        self._entry_ids: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    @classmethod
    def from_blobs(
        cls,
        dims: int,
        chunk_ids: Sequence[int],
        entry_ids: Sequence[int],
        blobs: Sequence[bytes],
        **options: int,
    ) -> VectorIndex:
        """Build from stored little-endian float32 BLOBs (one per row)."""
        index = cls(dims, **options)
        if any(len(blob) != dims * 4 for blob in blobs):
            raise DimensionMismatchError(f"a stored vector is not {dims} float32 values")
        index.reserve(len(blobs))
        for first in range(0, len(blobs), BLOCK_ROWS):
            last = min(first + BLOCK_ROWS, len(blobs))
            matrix = np.frombuffer(b"".join(blobs[first:last]), dtype="<f4").reshape(last - first, dims)
            index.add(chunk_ids[first:last], entry_ids[first:last], matrix)
        return index

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """The memory its arrays hold (their capacity, not only the rows in use)."""
        arrays = (self._vectors, self._codes, self._chunk_ids, self._entry_ids)
        return sum(array.nbytes for array in arrays)

    def reserve(self, rows: int) -> None:
        """Make room for `rows` rows in all, so a bulk load does not grow step by step."""
        if rows > self._vectors.shape[0]:
            self._grow(rows)

    def add(self, chunk_ids: Sequence[int], entry_ids: Sequence[int], vectors: npt.ArrayLike) -> None:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim != 2 or array.shape[1] != self.dims:
            raise DimensionMismatchError(
                f"expected vectors of {self.dims} dimensions, got shape {array.shape}"
            )
        count = array.shape[0]
        if len(chunk_ids) != count or len(entry_ids) != count:
            raise ValueError("one chunk id and one entry id per vector")
        needed = self._size + count
        if needed > self._vectors.shape[0]:
            self._grow(max(needed, int(self._vectors.shape[0] * GROWTH_FACTOR), MIN_CAPACITY_ROWS))
        for first in range(0, count, BLOCK_ROWS):
            rows = normalised(array[first : first + BLOCK_ROWS], self.dims)
            at = self._size + first
            self._vectors[at : at + len(rows)] = rows
            self._codes[at : at + len(rows)] = sign_codes(rows)
        self._chunk_ids[self._size : needed] = chunk_ids
        self._entry_ids[self._size : needed] = entry_ids
        self._size = needed

    def remove_entry(self, entry_id: int) -> int:
        """Drop every row of one entry; returns how many there were."""
        size = self._size
        keep = self._entry_ids[:size] != entry_id
        removed = size - int(keep.sum())
        if removed:
            self._vectors = self._vectors[:size][keep]
            self._codes = self._codes[:size][keep]
            self._chunk_ids = self._chunk_ids[:size][keep]
            self._entry_ids = self._entry_ids[:size][keep]
            self._size = size - removed
        return removed

    def search(self, query: npt.ArrayLike, k: int) -> list[VectorMatch]:
        """The `k` rows most similar to `query`, best first, with exact cosine scores."""
        return self.snapshot().search(query, k)

    def snapshot(self) -> IndexSnapshot:
        """The rows as they are now; later changes to the index do not touch it (for worker threads)."""
        size = self._size
        return IndexSnapshot(
            dims=self.dims,
            exact_max_rows=self.exact_max_rows,
            candidates=self.candidates,
            vectors=self._vectors[:size],
            codes=self._codes[:size],
            chunk_ids=self._chunk_ids[:size],
            entry_ids=self._entry_ids[:size],
        )

    def _grow(self, capacity: int) -> None:
        size = self._size
        vectors = np.empty((capacity, self.dims), dtype=np.float32)
        codes = np.empty((capacity, self._codes.shape[1]), dtype=np.uint64)
        chunk_ids = np.empty(capacity, dtype=np.int64)
        entry_ids = np.empty(capacity, dtype=np.int64)
        vectors[:size] = self._vectors[:size]
        codes[:size] = self._codes[:size]
        chunk_ids[:size] = self._chunk_ids[:size]
        entry_ids[:size] = self._entry_ids[:size]
        self._vectors, self._codes, self._chunk_ids, self._entry_ids = vectors, codes, chunk_ids, entry_ids


@dataclass(frozen=True, slots=True)
class IndexSnapshot:
    """Read-only views of an index's rows at one moment; safe to search from another thread."""

    dims: int
    exact_max_rows: int
    candidates: int
    vectors: FloatMatrix
    codes: npt.NDArray[np.uint64]
    chunk_ids: npt.NDArray[np.int64]
    entry_ids: npt.NDArray[np.int64]

    def search(self, query: npt.ArrayLike, k: int) -> list[VectorMatch]:
        size = len(self.chunk_ids)
        q = normalised(query, self.dims)[0]
        k = min(k, size)
        if k <= 0:
            return []
        if size <= max(self.exact_max_rows, self.candidates):
            rows = np.arange(size)
            scores = self.vectors @ q
        else:
            query_code = sign_codes(q.reshape(1, -1))
            distances = np.empty(size, dtype=np.int32)
            for first in range(0, size, BLOCK_ROWS):
                block = self.codes[first : first + BLOCK_ROWS]
                distances[first : first + len(block)] = np.bitwise_count(block ^ query_code).sum(axis=1)
            wanted = max(self.candidates, k)
            rows = np.argpartition(distances, wanted - 1)[:wanted]
            scores = self.vectors[rows] @ q
        if k < len(scores):
            best = np.argpartition(scores, len(scores) - k)[len(scores) - k :]
        else:
            best = np.arange(len(scores))
        best = best[np.argsort(-scores[best], kind="stable")]
        return [
            VectorMatch(int(self.chunk_ids[rows[i]]), int(self.entry_ids[rows[i]]), float(scores[i]))
            for i in best
        ]
