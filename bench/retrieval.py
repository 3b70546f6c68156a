"""Knowledge-base search: p50/p95 latency and recall@5 against exact search, per corpus size and HNSW setting.

The corpus is real text: overlapping word windows over the shared datasets' texts (`--data`, default
`../shared/datasets`, read only; every `*.csv` there with a `text` column, each file's unique texts in
order as one word stream), `--window` words long, with the stride that gives the largest size asked for;
smaller sizes are evenly spaced subsets of those windows. Windows are embedded with the product's model
(integrations/embeddings.py, batches of 64) and cached in `var/bench_retrieval/` (gitignored) so later
runs skip the model; `--sizes` picks the sizes.

Each size is loaded as `Chunk` rows into a throw-away database on the embedded PostgreSQL (pgvector), with
the product's own HNSW index (`chunk_embedding_hnsw`, `triage/models.py`) and, with `--index m:ef_construction`,
other builds of it. Queries are other texts of the same datasets (tickets), embedded the same way. Each
query goes through the product's selector, `triage.selectors.chunk_search` (limit 5), timed around the
call; exact search is the same selector with index scans disabled (`SET LOCAL enable_indexscan = off`:
a sequential scan ordering every row by cosine distance). recall@5 = the share of the exact top 5 the
index search returned. `--ef-search` lists `hnsw.ef_search` values (pgvector's default is 40).

    uv run python bench/retrieval.py [--sizes 10000,100000] [--queries 200] [--ef-search 20,40,80,160]
                                      [--index 16:64,24:128]

Prints one line per size, index build and ef_search, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DJANGO_DEV_MODE", "1")

import django

django.setup()

import numpy as np
from django.db import connection, transaction

from integrations.embeddings import get_local_embedder
from triage.evaluation import isolated_database
from triage.models import Article, Chunk
from triage.selectors import chunk_search

CACHE = ROOT / "var" / "bench_retrieval"
K = 5


def texts_of(data: Path, name: str) -> list[list[str]]:
    """Per dataset file `name` (examples.csv, tickets.csv), its unique `text` values in order."""
    streams = []
    for path in sorted(data.glob(f"*/{name}")):
        with path.open(newline="", encoding="utf-8") as handle:
            texts = [row["text"] for row in csv.DictReader(handle) if row.get("text")]
        streams.append(list(dict.fromkeys(texts)))
    return streams


def windows(data: Path, *, size: int, width: int) -> list[str]:
    """`size` overlapping windows of `width` words over the datasets' example texts, evenly strided."""
    seen: set[str] = set()
    words: list[str] = []
    for stream in texts_of(data, "examples.csv"):
        for text in stream:
            if text not in seen:  # banking77-oos repeats banking77's examples
                seen.add(text)
                words.extend(text.split())
    stride = (len(words) - width) / size
    if stride < 1:
        raise SystemExit(f"{len(words)} words give at most {len(words) - width} windows of {width}")
    return [" ".join(words[int(i * stride) : int(i * stride) + width]) for i in range(size)]


def embedded(texts: list[str], *, label: str) -> np.ndarray:
    """Embeddings of `texts`: from the cache files where they hold a text, else computed and saved.

    The cache is files of (text digests, vectors), one per block of 2000 texts embedded, so any subset or
    reordering of texts embedded before (a smaller corpus, the queries) costs nothing the next time.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    embedder = get_local_embedder()
    digests = [hashlib.sha256(f"{embedder.name}\0{t}".encode()).hexdigest() for t in texts]
    known: dict[str, np.ndarray] = {}
    wanted = set(digests)
    for path in sorted(CACHE.glob("*.npz")):
        with np.load(path) as block:
            for d, v in zip(block["digests"].tolist(), block["vectors"], strict=True):
                if d in wanted:
                    known[d] = v
    missing = list(dict.fromkeys(d for d in digests if d not in known))
    text_of = dict(zip(digests, texts, strict=True))
    for start in range(0, len(missing), 2000):
        part = missing[start : start + 2000]
        began = time.perf_counter()
        vectors = embedder.embed([text_of[d] for d in part], batch_size=64).astype(np.float32)
        name = hashlib.sha256("".join(part).encode()).hexdigest()[:24]
        np.savez(CACHE / f"{name}.npz", digests=np.asarray(part), vectors=vectors)
        known.update(zip(part, vectors, strict=True))
        rate = len(part) / (time.perf_counter() - began)
        print(f"  embedded {label}: {start + len(part)}/{len(missing)} new ({rate:.0f}/s)", file=sys.stderr, flush=True)
    if not texts:
        return np.zeros((0, 384), dtype=np.float32)
    return np.stack([known[d] for d in digests]).astype(np.float32)


def load(chunks: list[str], vectors: np.ndarray) -> None:
    per_article = 1000
    for a, start in enumerate(range(0, len(chunks), per_article)):
        article = Article.objects.create(slug=f"window-{a}", title=f"Windows {start}..", body="")
        Chunk.objects.bulk_create(
            [
                Chunk(article=article, ordinal=i, text=text, embedding=vector)
                for i, (text, vector) in enumerate(
                    zip(chunks[start : start + per_article], vectors[start : start + per_article], strict=True)
                )
            ],
            batch_size=500,
        )


def index_build(m: int, ef_construction: int) -> float:
    began = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
        cursor.execute(
            f"CREATE INDEX chunk_embedding_hnsw ON triage_chunk USING hnsw (embedding vector_cosine_ops) "
            f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)})"
        )
        cursor.execute("ANALYZE triage_chunk")
    return time.perf_counter() - began


def exact_top(queries: np.ndarray) -> list[list[int]]:
    tops = []
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")
        for q in queries:
            tops.append([p.chunk_id for p in chunk_search(embedding=q, limit=K).passages])
    return tops


def measure(queries: np.ndarray, exact: list[list[int]], ef_search: int) -> dict[str, float]:
    # The product sets `hnsw.ef_search` once per connection (`triage.selectors.hnsw_session_set`) and
    # searches with no statement of its own: the same here, one value after the other.
    with connection.cursor() as cursor:
        cursor.execute(f"SET hnsw.ef_search = {int(ef_search)}")
    for q in queries[:20]:  # warm the index pages and the plan
        chunk_search(embedding=q, limit=K)
    times, hits = [], 0
    for q, truth in zip(queries, exact, strict=True):
        began = time.perf_counter()
        found = chunk_search(embedding=q, limit=K)
        times.append((time.perf_counter() - began) * 1000)
        hits += len({p.chunk_id for p in found.passages} & set(truth))
    times.sort()
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2),
        "recall_at_5": round(hits / (K * len(exact)), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--window", type=int, default=40, help="words per chunk")
    parser.add_argument(
        "--corpus", type=int, default=0, help="windows the sizes are drawn from (default: the largest size)"
    )
    parser.add_argument("--ef-search", default="20,40,80,160")
    parser.add_argument("--index", default="16:64", help="m:ef_construction builds; the first is the product's")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    ef_values = [int(e) for e in args.ef_search.split(",")]
    builds = [tuple(int(x) for x in b.split(":")) for b in args.index.split(",")]
    query_texts = [t for stream in texts_of(args.data, "tickets.csv") for t in stream][::7][: args.queries]
    queries = embedded(query_texts, label="queries")
    results = []
    print(f"{'chunks':>7} {'m':>3} {'ef_c':>5} {'build s':>8} {'ef_search':>9} {'p50 ms':>7} {'p95 ms':>7} recall@5")
    # Each smaller corpus is an evenly spaced subset of the largest one's windows: what it embedded is
    # cached for the larger one.
    all_chunks = windows(args.data, size=max(args.corpus, *sizes), width=args.window)
    for size in sorted(sizes):
        picked = np.linspace(0, len(all_chunks) - 1, size).round().astype(int)
        chunks = [all_chunks[i] for i in picked]
        vectors = embedded(chunks, label=f"{size} chunks")
        with isolated_database():
            load(chunks, vectors)
            exact = exact_top(queries)
            for m, ef_construction in builds:
                build = index_build(m, ef_construction)
                for ef in ef_values:
                    figures = measure(queries, exact, ef)
                    row = {"chunks": size, "m": m, "ef_construction": ef_construction, "build_s": round(build, 1)}
                    row |= {"ef_search": ef, **figures}
                    results.append(row)
                    print(
                        f"{size:>7} {m:>3} {ef_construction:>5} {build:>8.1f} {ef:>9} {figures['p50_ms']:>7.2f} "
                        f"{figures['p95_ms']:>7.2f} {figures['recall_at_5']:.3f}",
                        flush=True,
                    )
    print(json.dumps({"queries": len(queries), "window_words": args.window, "results": results}))


if __name__ == "__main__":
    main()
