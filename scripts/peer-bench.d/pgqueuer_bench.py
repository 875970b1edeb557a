"""PgQueuer's enqueue and no-op drain, measured the way upsert-bench measures ours.

With --payloads, its jobs carry the given payloads (upsert-bench passes its own workload's, so
that both queues enqueue the same bytes); without, they are empty, as PgQueuer's own benchmark
enqueues them.

Run by scripts/peer-bench inside its virtual environment. For each round: clear PgQueuer's
tables, enqueue JOBS no-op jobs with PgQueuer's batch enqueue (lists, CHUNK jobs per call,
one connection), then start PROCESSES QueueManagers (batch BATCH, drain mode) that were
started and connected beforehand, and time from the start signal until the last one has
returned (its status log flushed). Prints each round on stderr, then a summary on stdout: one
JSON object (upsert-bench --peer reads it).
"""

import argparse
import asyncio
import datetime
import json
import multiprocessing as mp
import statistics
import sys
import time

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Queries, QueueManager
from pgqueuer.types import QueueExecutionMode


async def install(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(connection))
        if not await queries.schema_is_installed():
            await queries.install()
    finally:
        await connection.close()


async def enqueue(dsn: str, jobs: int, chunk: int, payloads: list[bytes | None]) -> float:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        await connection.execute("CHECKPOINT")
        queries = Queries(AsyncpgDriver(connection))
        started = time.perf_counter()
        left = jobs
        while left > 0:
            n = min(chunk, left)
            first = jobs - left
            await queries.enqueue(["noop"] * n, [payloads[(first + i) % len(payloads)] for i in range(n)], [0] * n)
            left -= n
        return time.perf_counter() - started
    finally:
        await connection.close()


def drain_process(dsn: str, batch: int, ready, start, finished) -> None:
    async def main() -> None:
        connection = await asyncpg.connect(dsn)
        manager = QueueManager(Queries(AsyncpgDriver(connection)))

        @manager.entrypoint("noop")
        async def noop(job) -> None:
            return None

        ready.release()
        while not start.is_set():
            await asyncio.sleep(0.001)
        await manager.run(batch_size=batch, mode=QueueExecutionMode.drain,
                          dequeue_timeout=datetime.timedelta(seconds=1))
        finished.put(time.perf_counter())
        await connection.close()

    asyncio.run(main())


def drain(dsn: str, processes: int, batch: int) -> float:
    context = mp.get_context("spawn")
    ready = context.Semaphore(0)
    start = context.Event()
    finished = context.Queue()
    workers = [context.Process(target=drain_process, args=(dsn, batch, ready, start, finished))
               for _ in range(processes)]
    for worker in workers:
        worker.start()
    for _ in workers:
        ready.acquire()
    time.sleep(0.2)
    started = time.perf_counter()
    start.set()
    ends = [finished.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
        if worker.exitcode != 0:
            raise SystemExit(f"a PgQueuer worker exited with {worker.exitcode}")
    return max(ends) - started


async def left_over(dsn: str) -> tuple[int, int]:
    connection = await asyncpg.connect(dsn)
    try:
        queued = await connection.fetchval("SELECT count(*) FROM pgqueuer")
        logged = await connection.fetchval(
            "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
        return queued, logged
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", default=None,
                        help="a postgresql:// URL (default: the libpq environment, PGHOST and the rest)")
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--enqueue-chunk", type=int, default=5000)
    parser.add_argument("--payloads", default=None,
                        help="a file of payloads, one per line (used in turn); default: none (empty jobs)")
    arguments = parser.parse_args()

    payloads: list[bytes | None] = [None]
    if arguments.payloads:
        with open(arguments.payloads, "rb") as lines:
            payloads = [line.rstrip(b"\n") for line in lines if line.strip()]
    asyncio.run(install(arguments.dsn))
    enqueue_rates, drain_rates = [], []
    for round_number in range(1, arguments.rounds + 1):
        enqueue_seconds = asyncio.run(enqueue(arguments.dsn, arguments.jobs, arguments.enqueue_chunk, payloads))
        drain_seconds = drain(arguments.dsn, arguments.processes, arguments.batch_size)
        queued, logged = asyncio.run(left_over(arguments.dsn))
        if queued != 0 or logged < arguments.jobs:
            raise SystemExit(f"round {round_number}: {queued} jobs left, {logged} logged successful")
        enqueue_rates.append(arguments.jobs / enqueue_seconds)
        drain_rates.append(arguments.jobs / drain_seconds)
        print(f"peer-bench: round {round_number}: enqueue {enqueue_rates[-1]:.0f} jobs/s, "
              f"no-op drain {drain_rates[-1]:.0f} jobs/s", file=sys.stderr, flush=True)
    name = (f"PgQueuer {pgqueuer.__version__}, {arguments.processes} processes, "
            f"batch {arguments.batch_size}, enqueue {arguments.enqueue_chunk} a call, "
            + (f"payloads of {sum(len(p) for p in payloads) // len(payloads)} bytes" if arguments.payloads
               else "empty payloads"))
    print(json.dumps({"name": name, "jobs": arguments.jobs, "processes": arguments.processes,
                      "batch_size": arguments.batch_size,
                      "enqueue_rounds": [round(x) for x in enqueue_rates],
                      "drain_rounds": [round(x) for x in drain_rates],
                      "enqueue_median": round(statistics.median(enqueue_rates)),
                      "drain_median": round(statistics.median(drain_rates))}), flush=True)


if __name__ == "__main__":
    main()
