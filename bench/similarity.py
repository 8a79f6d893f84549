"""Similarity search at scale: N clustered unit vectors in ``rm_embeddings``, the HNSW index build,
then top-10 queries through ``projections.queries.similar_clips`` — the function the search page
calls — with its filters (model, strategy, leaving out the clip's own video), against exact search.

    python -m bench.similarity [--n 100000] [--dimension 512] [--queries 200] [--index-type halfvec]
                               [--m 16] [--ef-construction 64] [--ef-search 40,100,200] [--no-index]
                               [--out FILE]

``--no-index`` builds no index: the searches then rank every vector exactly, as the read model does
for a dimension with fewer rows than ``projections.similarity.INDEX_MIN_ROWS`` (what sets it).

The vectors are built like CLIP embeddings of video clips: a shared direction (CLIP vectors sit in a
cone), then topic, sub-topic, video and clip components, so clips of one video are near duplicates
(cosine ≈ 0.9) and every clip has many near neighbours in other videos (≈ 0.75 within a sub-topic).
They are loaded by binary COPY into the read model's own tables (``rm_embeddings`` and the
``rm_clips`` rows the query joins) in an embedded PostgreSQL with pgvector, and the index is the
project's own (``projections.similarity.create_hnsw_index``). Exact neighbours come from numpy over
the same float32 vectors. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import sql

from bench.harness import arguments, load_average, process_cpu_seconds, write_report
from infra.database import connect, embedded_postgres
from infra.schema import prepare_schema
from projections import similarity
from projections.queries import similar_clips
from projections.runner import build_projections, ensure_schema, set_search_path
from projections.similarity import PgVector, PgVectorDumper, create_hnsw_index, hnsw_index_name

log = logging.getLogger("bench.similarity")

SCHEMA = "bench"
MODEL = "ViT-B-32"
STRATEGY = "keyframe_multi_avg"
CLIPS_PER_VIDEO = 8
#: Weights of the shared, topic, sub-topic, video and clip components of each vector.
WEIGHTS = (0.5, 0.5, 0.45, 0.4, 0.3)
CLIPS_PER_SUBTOPIC = 100
SUBTOPICS_PER_TOPIC = 10
CHUNK_VIDEOS = 2_500

Matrix = npt.NDArray[np.float32]


def _unit(rng: np.random.Generator, rows: int, dimension: int) -> Matrix:
    x = rng.standard_normal((rows, dimension), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def _uuids(rng: np.random.Generator, count: int) -> list[UUID]:
    """``count`` random (version 4) UUIDs from ``rng``: the same seed gives the same ids, so a kept
    database can be queried again (``--reuse``) by a corpus built anew."""
    raw = rng.integers(0, 256, (count, 16), dtype=np.uint8)
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    return [UUID(bytes=row.tobytes()) for row in raw]


class Corpus:
    """The clustered vectors, built chunk by chunk (video by video) from one seed."""

    def __init__(self, n: int, dimension: int, seed: int = 7) -> None:
        self.n = n - n % CLIPS_PER_VIDEO
        self.dimension = dimension
        self.videos = self.n // CLIPS_PER_VIDEO
        rng = np.random.default_rng(seed)
        self.shared = _unit(rng, 1, dimension)[0]
        subtopics = max(1, self.n // CLIPS_PER_SUBTOPIC)
        topics = max(1, subtopics // SUBTOPICS_PER_TOPIC)
        self.topic = _unit(rng, topics, dimension)
        self.subtopic = _unit(rng, subtopics, dimension)
        self.subtopic_topic = rng.integers(0, topics, subtopics)
        self.video_subtopic = rng.integers(0, subtopics, self.videos)
        self.rng = rng
        ids = np.random.default_rng(seed + 1)  # a stream of its own: the vectors stay as they were
        self.video_ids = _uuids(ids, self.videos)
        self.clip_ids = _uuids(ids, self.n)
        self.vectors = np.empty((self.n, dimension), dtype=np.float32)
        self._exact: dict[tuple[int, int, bool], list[int]] = {}

    def chunks(self) -> Iterator[tuple[int, int]]:
        """Fill :attr:`vectors` chunk by chunk; yields each chunk's clip range."""
        w_shared, w_topic, w_sub, w_video, w_clip = WEIGHTS
        for first in range(0, self.videos, CHUNK_VIDEOS):
            videos = np.arange(first, min(first + CHUNK_VIDEOS, self.videos))
            sub = self.video_subtopic[videos]
            base = (
                w_shared * self.shared
                + w_topic * self.topic[self.subtopic_topic[sub]]
                + w_sub * self.subtopic[sub]
                + w_video * _unit(self.rng, len(videos), self.dimension)
            )
            clips = np.repeat(base, CLIPS_PER_VIDEO, axis=0) + w_clip * _unit(
                self.rng, len(videos) * CLIPS_PER_VIDEO, self.dimension
            )
            clips /= np.linalg.norm(clips, axis=1, keepdims=True)
            start, end = first * CLIPS_PER_VIDEO, (first + len(videos)) * CLIPS_PER_VIDEO
            self.vectors[start:end] = clips
            yield start, end

    def video_of(self, clip: int) -> int:
        return clip // CLIPS_PER_VIDEO

    def exact(self, clip: int, k: int, *, least: bool = False) -> list[UUID]:
        """The ``k`` nearest (or farthest) clips of other videos, by float32 cosine distance."""
        return [self.clip_ids[i] for i in self.exact_rows(clip, k, least=least)]

    def exact_rows(self, clip: int, k: int, *, least: bool = False) -> list[int]:
        key = (clip, k, least)
        if key not in self._exact:
            self._exact[key] = self._exact_rows(clip, k, least=least)
        return self._exact[key]

    def _exact_rows(self, clip: int, k: int, *, least: bool = False) -> list[int]:
        sims = self.vectors @ self.vectors[clip]
        video = self.video_of(clip)
        sims[video * CLIPS_PER_VIDEO : (video + 1) * CLIPS_PER_VIDEO] = np.inf if least else -np.inf
        if least:
            sims = -sims
        top = np.argpartition(-sims, k)[:k]
        return [int(i) for i in top[np.argsort(-sims[top])]]


def load(conn: psycopg.Connection[Any], corpus: Corpus) -> float:
    """COPY the vectors into rm_embeddings and their clips into rm_clips; returns seconds."""
    row = conn.execute("SELECT 'vector'::regtype::oid").fetchone()
    assert row is not None
    oid = int(row[0])
    conn.adapters.register_dumper(PgVector, type("", (PgVectorDumper,), {"oid": oid}))
    header = np.array([corpus.dimension, 0], dtype=">u2").tobytes()
    now = datetime.now(UTC)
    started = time.perf_counter()
    with conn.cursor() as cur:
        for start, end in corpus.chunks():
            body = corpus.vectors[start:end].astype(">f4")
            with cur.copy(
                "COPY rm_embeddings (clip_id, model, strategy, vector_index, video_id, live, dimension, "
                "embedding, updated_at) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(["uuid", "text", "text", "int4", "uuid", "bool", "int4", oid, "timestamptz"])
                for i in range(start, end):
                    vector = PgVector(header + body[i - start].tobytes())
                    video = corpus.video_ids[corpus.video_of(i)]
                    copy.write_row(
                        (corpus.clip_ids[i], MODEL, STRATEGY, 0, video, True, corpus.dimension, vector, now)
                    )
            with cur.copy(
                "COPY rm_clips (id, video_id, start_frame, end_frame, state, live, origin, created_at, updated_at, "
                "version) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types(
                    [
                        "uuid",
                        "uuid",
                        "int4",
                        "int4",
                        "text",
                        "bool",
                        "text",
                        "timestamptz",
                        "timestamptz",
                        "int4",
                    ]
                )
                for i in range(start, end):
                    frame = (i % CLIPS_PER_VIDEO) * 100
                    video = corpus.video_ids[corpus.video_of(i)]
                    copy.write_row(
                        (
                            corpus.clip_ids[i],
                            video,
                            frame,
                            frame + 100,
                            "embedded",
                            True,
                            "shots",
                            now,
                            now,
                            6,
                        )
                    )
            conn.commit()
            log.info("loaded %d of %d vectors", end, corpus.n)
    conn.execute("ANALYZE rm_embeddings")
    conn.execute("ANALYZE rm_clips")
    conn.commit()
    return time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def backend_cpu_seconds(conn: psycopg.Connection[Any]) -> float:
    """CPU seconds the connection's server process has used (from /proc: the server is local)."""
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return process_cpu_seconds(int(row[0]))


def run_queries(
    conn: psycopg.Connection[Any], corpus: Corpus, probes: list[int], ef_search: int, *, least: bool = False
) -> dict[str, Any]:
    latencies: list[float] = []
    recalls: list[float] = []
    gaps: list[float] = []  # |mean cosine of the exact 10 - mean cosine of the 10 found|
    server_cpu, client_cpu = backend_cpu_seconds(conn), 0.0  # client: only inside similar_clips
    for clip in probes:
        started, started_cpu = time.perf_counter(), time.process_time()
        found = similar_clips(
            conn, SCHEMA, corpus.clip_ids[clip], MODEL, STRATEGY, None, 10, 0,
            least=least, other_videos=True, ef_search=ef_search,
        )  # fmt: skip
        latencies.append((time.perf_counter() - started) * 1000)
        client_cpu += time.process_time() - started_cpu
        truth = corpus.exact_rows(clip, 10, least=least)
        recalls.append(len({corpus.clip_ids[i] for i in truth} & {s.clip_id for s in found}) / 10)
        exact_mean = float(np.mean(corpus.vectors[truth] @ corpus.vectors[clip]))
        gaps.append(abs(exact_mean - statistics.mean(s.score for s in found)) if found else 1.0)
    server_cpu = backend_cpu_seconds(conn) - server_cpu
    return {
        "ef_search": ef_search,
        "least": least,
        "queries": len(probes),
        "p50_ms": round(statistics.median(latencies), 2),
        "p95_ms": round(percentile(latencies, 0.95), 2),
        "recall_at_10": round(statistics.mean(recalls), 4),
        "min_recall_at_10": min(recalls),
        "mean_cosine_gap_to_exact": round(statistics.mean(gaps), 4),
        "server_cpu_ms_per_query": round(server_cpu * 1000 / len(probes), 2),
        "client_cpu_ms_per_query": round(client_cpu * 1000 / len(probes), 2),
    }


def exact_scan_ms(conn: psycopg.Connection[Any], corpus: Corpus, probes: list[int]) -> float:
    """p50 of the same query with index scans off: what every request cost without the index. Not
    prepared: a plan cached with index scans on would be kept."""
    latencies = []
    threshold, conn.prepare_threshold = conn.prepare_threshold, None
    for clip in probes:
        with conn.transaction():
            conn.execute("SET LOCAL enable_indexscan = off")
            started = time.perf_counter()
            similar_clips(
                conn, SCHEMA, corpus.clip_ids[clip], MODEL, STRATEGY, None, 10, 0, other_videos=True
            )
            latencies.append((time.perf_counter() - started) * 1000)
    conn.prepare_threshold = threshold
    return round(statistics.median(latencies), 1)


def shape(corpus: Corpus, rng: np.random.Generator) -> dict[str, float]:
    """Mean cosine of random pairs, of clips of one video, and of each probe's 10th exact neighbour."""
    a, b = rng.integers(0, corpus.n, 2000), rng.integers(0, corpus.n, 2000)
    pairs = float(np.mean(np.sum(corpus.vectors[a] * corpus.vectors[b], axis=1)))
    same = float(np.mean(np.sum(corpus.vectors[a] * corpus.vectors[a ^ 1], axis=1)))
    tenth = []
    for clip in a[:50]:
        nearest = corpus.exact_rows(int(clip), 10)
        tenth.append(float(corpus.vectors[nearest[-1]] @ corpus.vectors[clip]))
    return {
        "mean_cosine_random_pairs": round(pairs, 3),
        "mean_cosine_same_video": round(same, 3),
        "mean_cosine_10th_neighbour_other_videos": round(float(np.mean(tenth)), 3),
    }


#: The build's figures, kept beside ``pgdata`` by ``--keep`` for ``--reuse``.
KEPT_BUILD = "similarity-build.json"


def build(conn: psycopg.Connection[Any], corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """Load the corpus and build the project's HNSW index; returns the build's figures."""
    ensure_schema(conn, build_projections(["clips", "similarity"]))
    load_seconds = load(conn, corpus)
    log.info("loaded %d vectors in %.1f s; building the index", corpus.n, load_seconds)
    conn.execute(sql.SQL("SET maintenance_work_mem = {}").format(sql.Literal(args.maintenance_work_mem)))
    conn.execute("SET max_parallel_maintenance_workers = 1")
    started = time.perf_counter()
    if not getattr(args, "no_index", False):
        with conn.cursor() as cur:
            create_hnsw_index(
                cur, "rm_embeddings", corpus.dimension, m=args.m, ef_construction=args.ef_construction
            )
    conn.commit()
    build_seconds = time.perf_counter() - started
    log.info("index built in %.1f s", build_seconds)
    return {
        "n": corpus.n,
        "dimension": corpus.dimension,
        "index_type": args.index_type,
        "m": args.m,
        "ef_construction": args.ef_construction,
        "indexed": not getattr(args, "no_index", False),
        "load_seconds": round(load_seconds, 1),
        "build_seconds": round(build_seconds, 1),
        "build_load_average": load_average(),
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def check_kept(conn: psycopg.Connection[Any], corpus: Corpus, rng: np.random.Generator) -> None:
    """The kept database holds this corpus: a few clips' stored vectors are the corpus's."""
    for clip in rng.integers(0, corpus.n, 5):
        row = conn.execute(
            "SELECT embedding::real[] FROM rm_embeddings WHERE clip_id = %s", (corpus.clip_ids[int(clip)],)
        ).fetchone()
        if row is None or not np.allclose(np.array(row[0], dtype=np.float32), corpus.vectors[int(clip)]):
            raise SystemExit(
                "the kept database does not hold this corpus (another --n, --dimension or seed?)"
            )


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Build (or, with ``args.reuse``, open a kept build) and time the queries."""
    reuse: Path | None = getattr(args, "reuse", None)
    keep: Path | None = getattr(args, "keep", None)
    kept: dict[str, Any] | None = None
    if reuse is not None:
        if not (reuse / KEPT_BUILD).exists():
            raise SystemExit(f"{reuse} holds no kept build ({KEPT_BUILD}); make one with --keep")
        kept = json.loads((reuse / KEPT_BUILD).read_text())
        args.n, args.dimension, args.index_type = kept["n"], kept["dimension"], kept["index_type"]
        args.m, args.ef_construction = kept["m"], kept["ef_construction"]
    elif keep is not None and (keep / "pgdata").exists():
        raise SystemExit(f"{keep} already holds a database; query it with --reuse or remove it")
    similarity.INDEX_TYPE = args.index_type  # the index's form, for the project's index and query alike
    corpus = Corpus(args.n, args.dimension)
    rng = np.random.default_rng(11)
    with ExitStack() as stack:
        home = (
            reuse or keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="heaters-bench-")))
        )
        address = stack.enter_context(
            embedded_postgres(home, shared_buffers=getattr(args, "shared_buffers", None))
        )
        if kept is None:
            prepare_schema(address, SCHEMA)
        with connect(address) as conn:
            set_search_path(conn, SCHEMA)
            if kept is None:
                kept = build(conn, corpus, args)
                if keep is not None:
                    (keep / KEPT_BUILD).write_text(json.dumps(kept, indent=2) + "\n")
            else:
                for _ in corpus.chunks():  # the same vectors, from the same seed
                    pass
                check_kept(conn, corpus, np.random.default_rng(5))
            row = conn.execute(
                "SELECT coalesce(pg_relation_size(to_regclass(%s)), 0), "
                "pg_total_relation_size('rm_embeddings'::regclass), "
                "current_setting('shared_buffers')",
                (hnsw_index_name("rm_embeddings", args.dimension),),
            ).fetchone()
            assert row is not None
            index_bytes, table_bytes, shared_buffers = row
            conn.commit()
        # The queries on a connection of their own, in autocommit like the web app's pool.
        with connect(address, autocommit=True) as conn:
            set_search_path(conn, SCHEMA)
            probes = [int(i) for i in rng.integers(0, corpus.n, args.queries)]
            least_probes = probes[: max(20, len(probes) // 4)]
            # The exact neighbours first: numpy's scans of every vector (2 GB at 1M, on every core)
            # between timed queries slowed the first ef_search's queries by several times.
            for clip in probes:
                corpus.exact_rows(clip, 10)
            for clip in least_probes:
                corpus.exact_rows(clip, 10, least=True)
            # Warm the cache like a serving system, both ways (the least similar search other parts
            # of the graph): a server just started reads each query's ~1,600 index pages into
            # shared_buffers, which took 3 times the warm CPU at 1M.
            warm = getattr(args, "warm_queries", 20)
            for i, clip in enumerate(rng.integers(0, corpus.n, warm)):
                similar_clips(
                    conn,
                    SCHEMA,
                    corpus.clip_ids[int(clip)],
                    MODEL,
                    STRATEGY,
                    least=i % 4 == 3,
                    other_videos=True,
                )
            load_before = load_average()
            nearest = [run_queries(conn, corpus, probes, ef) for ef in args.ef_search]
            least = [run_queries(conn, corpus, least_probes, ef, least=True) for ef in args.ef_search]
            load_after = load_average()
            exact = exact_scan_ms(conn, corpus, probes[: args.exact_queries]) if args.exact_queries else None
        return {
            **kept,
            "clips_per_video": CLIPS_PER_VIDEO,
            "shape": shape(corpus, rng),
            "reused": reuse is not None,
            "shared_buffers": shared_buffers,
            "index_mb": round(index_bytes / 2**20, 1),
            "table_and_indexes_mb": round(table_bytes / 2**20, 1),
            "query_load_average": [load_before, load_after],
            "nearest": nearest,
            "least_similar": least,
            "exact_scan_p50_ms": exact,
        }


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--index-type", choices=("halfvec", "vector"), default=similarity.INDEX_TYPE)
    parser.add_argument("--m", type=int, default=similarity.HNSW_M)
    parser.add_argument("--ef-construction", type=int, default=similarity.HNSW_EF_CONSTRUCTION)
    parser.add_argument(
        "--ef-search",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[40, 100, 200],
        help="comma-separated",
    )
    parser.add_argument("--exact-queries", type=int, default=5, help="queries timed with index scans off")
    parser.add_argument(
        "--no-index", action="store_true", help="no HNSW index: searches rank every vector exactly"
    )
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument(
        "--shared-buffers", default="2GB", help="of the embedded server: the 1M index is about 1.6 GB"
    )
    parser.add_argument("--warm-queries", type=int, default=1000, help="untimed queries first")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--keep", type=Path, help="build the database in DIR and keep it there")
    where.add_argument(
        "--reuse",
        type=Path,
        help="query the database kept in DIR (skips load and build; its n, dimension, "
        "index type and build parameters are the kept ones)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/similarity.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("projections").setLevel(logging.WARNING)
    result = measure(args)
    print(
        f"\n{result['n']} x {result['dimension']} ({result['index_type']}, m={result['m']}, "
        f"ef_construction={result['ef_construction']}): load {result['load_seconds']} s, "
        f"index build {result['build_seconds']} s (load average {result['build_load_average']}), "
        f"index {result['index_mb']} MB; shape {result['shape']}\n"
        f"queries: shared_buffers {result['shared_buffers']}, load average {result['query_load_average']}"
        + (" (reused build)" if result["reused"] else "")
    )
    print(
        f"\n{'order':<8} {'ef_search':>9} {'p50 ms':>8} {'p95 ms':>8} {'recall@10':>10} {'cos gap':>8} "
        f"{'srv cpu ms':>10} {'p95<20ms':>9} {'recall>=.95':>12}"
    )
    for row in [*result["nearest"], *result["least_similar"]]:
        print(
            f"{'least' if row['least'] else 'nearest':<8} {row['ef_search']:>9} {row['p50_ms']:>8} {row['p95_ms']:>8} "
            f"{row['recall_at_10']:>10} {row['mean_cosine_gap_to_exact']:>8} {row['server_cpu_ms_per_query']:>10} {'yes' if row['p95_ms'] < 20 else 'no':>9} "
            f"{'yes' if row['recall_at_10'] >= 0.95 else 'no':>12}"
        )
    if result["exact_scan_p50_ms"] is not None:
        print(f"exact scan (index scans off), p50: {result['exact_scan_p50_ms']} ms")
    write_report(args.out, result)


if __name__ == "__main__":
    main()
