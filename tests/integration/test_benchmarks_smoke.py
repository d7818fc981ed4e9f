"""The benchmark's smoke mode: correctness only (no oversell, conservation), never timing."""

from __future__ import annotations

import uuid

from benchmarks import kafka as kafka_benchmark
from benchmarks import watch as watch_benchmark
from benchmarks.__main__ import run_benchmarks, smoke_config
from benchmarks.http import process_cpu_seconds
from benchmarks.systems import Urls

from commercekit.testing.servers import KafkaServer, PostgresServer, RedisServer


async def test_smoke_run_holds_the_invariants(
    redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database(f"bench_{uuid.uuid4().hex[:10]}")
    # A database of its own on the shared Redis: the benchmark flushes what it uses.
    urls = Urls(redis_server.url.rsplit("/", 1)[0] + "/7", database)
    report = await run_benchmarks(smoke_config(), urls)

    records = report["records"]
    assert {r["scenario"] for r in records} == {"hot", "spread", "cart5"}
    for record in records:
        if record["system"].startswith("commercekit"):
            where = (record["scenario"], record["system"], record["concurrency"])
            assert record["oversold"] == 0, where
            assert record["conserved"], (where, record["timed"], record["sellout"])
            assert record["errors"] == 0, (where, record["timed"], record["sellout"])
            assert record["sellout"]["units_granted"] > 0, where
    naive = [r for r in records if r["system"] == "redis-naive"]
    assert naive
    # The naive baseline may oversell; the measurement must be there either way.
    assert all(isinstance(r["oversold"], int) and r["oversold"] >= 0 for r in naive)
    assert all("oversold" in r["sellout"] for r in naive)


async def test_the_kafka_benchmark_settles_every_payment(
    kafka_server: KafkaServer, redis_server: RedisServer, postgres_server: PostgresServer
) -> None:
    database = postgres_server.create_database(f"bench_{uuid.uuid4().hex[:10]}")
    redis_url = redis_server.url.rsplit("/", 1)[0] + "/7"
    database_url = database.replace("postgresql://", "postgresql+asyncpg://", 1)
    result = await kafka_benchmark.run(kafka_server, database_url, redis_url, 200, 8)
    rates = result["events_per_second"]
    assert set(rates) == {"publish", "consume", "consume+claim", "settle"}
    assert all(rate > 0 for rate in rates.values()), rates  # and the settle phase sold all 200


async def test_the_watch_benchmark_announces_every_row(postgres_server: PostgresServer) -> None:
    database = postgres_server.create_database(f"watch_{uuid.uuid4().hex[:10]}")
    pid = postgres_server.pid
    assert pid is not None
    result = await watch_benchmark.measure(
        database, rows=300, skus=3, limit=100, server_cpu=lambda: process_cpu_seconds([pid])
    )
    assert result["rows"] == 303  # the 3 stock rows and the 300 holds, each once
    assert result["rows_per_s"] > 0
    assert result["postgres_cpu_us_per_row"] > 0
    assert result["journal_grew_bytes"] == 0  # the watch writes nothing to the journal
