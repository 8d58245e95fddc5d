"""Knowledge search benchmark: top-5 latency over 10k and 100k chunks of 1536 dimensions.

    .venv/bin/python -m bench.bench_search [--sizes 10000 100000] [--queries 100]

For each size it stores the chunks through the real `KnowledgeStore` (SQLite, float32 BLOBs), loads
them back into a `VectorIndex` as the bot does on the first search in a guild, then times top-5
queries: the exact float32 scan and the index's own method (exact up to `EXACT_SEARCH_MAX_ROWS`, the
sign-bit prefilter plus exact rescoring past it), and how many of the exact top-5 the index's method
returns. The vectors are synthetic but shaped like real embeddings: topics (clusters) sharing a
common direction, so neighbours are real neighbours. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bot.knowledge import load_index
from bot.storage import Storage
from bot.vector_index import EXACT_SEARCH_MAX_ROWS, IndexSnapshot, VectorIndex, VectorMatch

DIMS = 1536
TOP_K = 5
CHUNKS_PER_ENTRY = 500
TOPICS_PER_10K = 200
GUILD_ID = 1
MODEL = "text-embedding-3-small"
SHARED_MEMORY = "/dev/shm"


def synthetic_embeddings(rows: int, seed: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """(chunk vectors, query vectors): unit vectors around topics, with a shared mean direction."""
    rng = np.random.default_rng(seed)
    topics = max(1, rows * TOPICS_PER_10K // 10_000)
    common = rng.standard_normal(DIMS, dtype=np.float32)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((topics, DIMS), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)

    def around(labels: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
        noise = rng.random((len(labels), DIMS), dtype=np.float32) - np.float32(0.5)  # cheaper than normal
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        vectors = 0.5 * common + 0.6 * centres[labels] + 0.6 * noise
        unit: npt.NDArray[np.float32] = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(
            np.float32
        )
        return unit

    chunks = np.empty((rows, DIMS), dtype=np.float32)
    for first in range(0, rows, 10_000):  # in slices, to keep the temporary arrays small
        count = min(10_000, rows - first)
        chunks[first : first + count] = around(rng.integers(0, topics, count))
    return chunks, around(rng.integers(0, topics, 200))


async def store_and_load(path: Path, vectors: npt.NDArray[np.float32]) -> tuple[float, float, VectorIndex]:
    """Write through `KnowledgeStore.add` (one entry per 500 chunks), then load as the bot does."""
    storage = await Storage.open(path)
    try:
        started = time.perf_counter()
        for first in range(0, len(vectors), CHUNKS_PER_ENTRY):
            rows = vectors[first : first + CHUNKS_PER_ENTRY]
            await storage.knowledge.add(
                guild_id=GUILD_ID,
                author_id=1,
                title=f"entry {first // CHUNKS_PER_ENTRY}",
                source="bench",
                jump_url=None,
                model=MODEL,
                dims=DIMS,
                chunks=[(f"chunk {first + n}", row.astype("<f4").tobytes()) for n, row in enumerate(rows)],
            )
        stored_s = time.perf_counter() - started
        started = time.perf_counter()
        index = await load_index(storage.knowledge, GUILD_ID, MODEL, DIMS)
        load_s = time.perf_counter() - started
    finally:
        await storage.close()
    return stored_s, load_s, index


def exact_only(snapshot: IndexSnapshot) -> IndexSnapshot:
    return IndexSnapshot(
        dims=snapshot.dims,
        exact_max_rows=len(snapshot.chunk_ids),
        candidates=snapshot.candidates,
        vectors=snapshot.vectors,
        codes=snapshot.codes,
        chunk_ids=snapshot.chunk_ids,
        entry_ids=snapshot.entry_ids,
    )


def timed(
    search: Callable[[npt.NDArray[np.float32]], list[VectorMatch]], queries: npt.NDArray[np.float32]
) -> tuple[list[float], list[set[int]]]:
    """Each query's latency in ms, and the chunk ids it found."""
    search(queries[0])  # warm up
    timings, found = [], []
    for query in queries:
        started = time.perf_counter()
        matches = search(query)
        timings.append((time.perf_counter() - started) * 1000)
        found.append({match.chunk_id for match in matches})
    return timings, found


def figures(values: list[float]) -> str:
    return f"p50 {p(values, 50):6.2f} ms   p99 {p(values, 99):6.2f} ms   min {min(values):6.2f} ms"


def p(values: list[float], quantile: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(quantile) - 1]


def bench(rows: int, queries: int, directory: Path) -> None:
    started = time.perf_counter()
    vectors, query_vectors = synthetic_embeddings(rows, seed=rows)
    query_vectors = query_vectors[:queries]
    made_s = time.perf_counter() - started
    started = time.perf_counter()
    built = VectorIndex(DIMS)
    built.add(range(rows), range(rows), vectors)
    build_s = time.perf_counter() - started
    del built
    stored_s, load_s, index = asyncio.run(store_and_load(directory / f"bench-{rows}.db", vectors))
    del vectors

    snapshot = index.snapshot()
    exact = exact_only(snapshot)
    method = (
        "exact" if rows <= EXACT_SEARCH_MAX_ROWS else f"sign-bit prefilter ({snapshot.candidates}) + rescore"
    )
    exact_ms, truth = timed(lambda q: exact.search(q, TOP_K), query_vectors)
    index_ms, found = timed(lambda q: snapshot.search(q, TOP_K), query_vectors)
    recall = statistics.mean(len(want & got) / TOP_K for want, got in zip(truth, found, strict=True))
    print(f"\n{rows:,} chunks x {DIMS} dims ({rows * DIMS * 4 / 2**20:,.0f} MiB float32)")
    print(f"  synthetic data     {made_s:6.2f} s")
    print(f"  store in SQLite    {stored_s:6.2f} s  ({rows // CHUNKS_PER_ENTRY} entries)")
    print(f"  load from SQLite   {load_s:6.2f} s  (query + build the index)")
    print(f"  build in memory    {build_s:6.2f} s  (copy, normalise, sign bits)")
    print(f"  exact float32      {figures(exact_ms)}")
    print(f"  index: {method}")
    print(f"                     {figures(index_ms)}")
    print(f"  recall@{TOP_K} of the index vs exact: {recall:.3f} over {len(query_vectors)} queries")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--db-dir",
        default=SHARED_MEMORY if os.path.isdir(SHARED_MEMORY) else None,
        help="where the SQLite files go (default: RAM-backed /dev/shm when there is one, for speed)",
    )
    args = parser.parse_args()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"numpy {np.__version__}, {os.cpu_count()} CPUs (load average {load}), exact search up to "
        f"{EXACT_SEARCH_MAX_ROWS:,} rows"
    )
    with tempfile.TemporaryDirectory(dir=args.db_dir) as directory:
        print(f"databases under {directory}")
        for rows in args.sizes:
            bench(rows, args.queries, Path(directory))


if __name__ == "__main__":
    main()
