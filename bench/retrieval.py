"""Benchmark: the embedded retrieval backend at 100,000 chunks, in one run.

Usage: .venv/bin/python bench/retrieval.py [--chunks 100000] [--queries 200] [--workdir /var/tmp]

Prints, on this machine:
  1. ingestion: documents/s of the lab corpus (files/corpus) through the whole
     pipeline (detect, parse, chunk, embed, write), and the share of each step;
     the embedder is all-MiniLM-L6-v2 on CPU (transformers, mean pooling) from
     the directory scripts/fetch-embedding-model.sh makes, otherwise a
     feature-hashing stand-in (said so);
  2. search at N chunks (default 100,000; 384 dimensions, seeded random unit
     vectors, 64 groups, each chunk readable by one group; the reader holds 2):
     p50/p99 of vector, lexical and hybrid queries with the access list applied
     inside the search, and the ratio of the vector query to the reference: an
     exact numpy scan of the same allowed vectors in this process;
  3. recall@10 of the engine's filtered vector search against that exact scan.
Figures are for comparison within one run, not absolute speeds.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from sovereign.retrieval.acl import Acl, principals_of  # noqa: E402
from sovereign.retrieval.backend import Query  # noqa: E402
from sovereign.retrieval.binding import IndexBinding  # noqa: E402
from sovereign.retrieval.chunk import Chunk, ChunkerConfig, DocumentInfo, chunk  # noqa: E402
from sovereign.retrieval.embedded import EmbeddedBackend  # noqa: E402
from sovereign.retrieval.ingest import load_manifest  # noqa: E402
from sovereign.retrieval.parse import parse, parser_digest  # noqa: E402

DIM = 384
GROUPS = 64
VOCABULARY = [f"w{i}" for i in range(5000)]


@dataclass
class HashingEmbedder:
    """Stand-in when the real model is not installed: words hashed into 384 dimensions."""

    model: str = "feature-hashing-384"
    digest: str = "sha256:" + hashlib.sha256(b"feature-hashing-384").hexdigest()
    dimension: int = DIM

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            values = [0.0] * DIM
            for word in text.lower().split():
                h = hashlib.blake2b(word.encode(), digest_size=8).digest()
                values[int.from_bytes(h[:4], "big") % DIM] += 1.0 if h[4] & 1 else -1.0
            norm = math.sqrt(sum(v * v for v in values)) or 1.0
            out.append([v / norm for v in values])
        return out


class MiniLM:
    """all-MiniLM-L6-v2, mean pooling, normalised (scripts/fetch-embedding-model.sh)."""

    dimension = DIM

    def __init__(self, path: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.net = AutoModel.from_pretrained(str(path)).eval()
        self.model = "all-MiniLM-L6-v2"
        weights = (path / "model.safetensors").read_bytes()
        self.digest = "sha256:" + hashlib.sha256(weights).hexdigest()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        with self.torch.no_grad():
            batch = self.tokenizer(list(texts), padding=True, truncation=True, return_tensors="pt")
            hidden = self.net(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).float()
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = self.torch.nn.functional.normalize(pooled, dim=1)
        return [[float(v) for v in row] for row in pooled.tolist()]


def embedder(path: Path) -> HashingEmbedder | MiniLM:
    if (path / "model.safetensors").exists():
        return MiniLM(path)
    print(
        f"{path} is missing (scripts/fetch-embedding-model.sh makes it): "
        "ingestion measured with the feature-hashing stand-in"
    )
    return HashingEmbedder()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def bench_ingestion(work: Path, repeat: int, model_dir: Path) -> None:
    model = embedder(model_dir)
    documents = load_manifest(ROOT / "files" / "corpus" / "manifest.yml")
    config = ChunkerConfig()
    binding = IndexBinding(parser_digest(), config.digest, model.model, model.digest, DIM)
    backend = EmbeddedBackend(work / "ingest")
    index = binding.index_name("bench")
    backend.create_index(index, binding)
    spent = {"parse": 0.0, "chunk": 0.0, "embed": 0.0, "write": 0.0}
    started = time.perf_counter()
    count = 0
    for round_ in range(repeat):
        for document in documents:
            t0 = time.perf_counter()
            parsed = parse(document.data, document.name)
            t1 = time.perf_counter()
            info = document.info
            renamed = DocumentInfo(
                f"{info.doc_id}-{round_}",
                info.title,
                info.source,
                info.data_class,
                info.updated,
                info.acl,
            )
            chunks = chunk(parsed, renamed, config)
            t2 = time.perf_counter()
            vectors = model.embed([c.embed_text for c in chunks])
            t3 = time.perf_counter()
            backend.write(index, chunks, vectors, {renamed.doc_id: document.digest}, model.digest)
            t4 = time.perf_counter()
            for key, value in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                spent[key] += value
            count += 1
    total = time.perf_counter() - started
    print(
        f"ingestion ({model.model}): {count} documents, {backend.count(index)} chunks "
        f"in {total:.2f} s = {count / total:.1f} documents/s"
    )
    print("  share: " + ", ".join(f"{k} {v / total:.0%}" for k, v in spent.items()))


def bench_search(work: Path, n: int, queries: int) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    groups = rng.integers(0, GROUPS, n)
    words = random.Random(7)
    binding = IndexBinding(
        "sha256:" + "0" * 64, "sha256:" + "1" * 64, "random", "sha256:" + "2" * 64, DIM
    )
    backend = EmbeddedBackend(work / "search")
    index = binding.index_name("bench")
    backend.create_index(index, binding)
    acls = [Acl.of(groups=[f"g{g}"]) for g in range(GROUPS)]
    t0 = time.perf_counter()
    for start in range(0, n, 2000):
        chunks = []
        for i in range(start, min(n, start + 2000)):
            info = DocumentInfo(
                f"d{i}", f"title {i}", f"dms://d{i}", "internal", "2026-12-01", acls[int(groups[i])]
            )
            text = " ".join(words.choice(VOCABULARY) for _ in range(40))
            chunks.append(Chunk(f"d{i}#0", 0, "", text, info))
        backend.write(
            index,
            chunks,
            vectors[start : start + len(chunks)].tolist(),
            {c.doc.doc_id: "sha256:" + "3" * 64 for c in chunks},
            binding.embedding_digest,
        )
    print(f"search: {n} chunks written in {time.perf_counter() - t0:.1f} s")
    reader = principals_of("reader", ["g3", "g17"])
    allowed = np.isin(groups, [3, 17])
    allowed_ids = np.flatnonzero(allowed)
    latencies: dict[str, list[float]] = {"vector": [], "lexical": [], "hybrid": [], "numpy": []}
    recalls = []
    for _ in range(queries):
        vector = rng.standard_normal(DIM).astype(np.float32)
        vector /= np.linalg.norm(vector)
        text = " ".join(words.choice(VOCABULARY) for _ in range(4))
        for mode in ("vector", "lexical", "hybrid"):
            query = Query(
                text,
                vector.tolist(),
                binding.embedding_digest,
                reader,
                k=10,
                mode=mode,
                candidates=10 if mode == "vector" else 50,
            )
            t = time.perf_counter()
            hits = backend.search(index, query)
            latencies[mode].append(time.perf_counter() - t)
            if mode == "vector":
                got = {int(h.doc_id[1:]) for h in hits}
        t = time.perf_counter()
        scores = vectors[allowed_ids] @ vector
        exact = {int(i) for i in allowed_ids[np.argsort(-scores)[:10]]}
        latencies["numpy"].append(time.perf_counter() - t)
        recalls.append(len(got & exact) / 10)
    print(f"queries: {queries} each, k=10, reader allowed {allowed.mean():.1%} of the chunks")
    for mode, values in latencies.items():
        label = "exact numpy scan (reference)" if mode == "numpy" else f"{mode} (embedded)"
        print(
            f"  {label:30s} p50 {statistics.median(values) * 1000:7.2f} ms   "
            f"p99 {percentile(values, 0.99) * 1000:7.2f} ms"
        )
    ratio = statistics.median(latencies["vector"]) / statistics.median(latencies["numpy"])
    print(f"  vector p50 / reference p50: {ratio:.1f}x")
    print(f"recall@10 of the filtered vector search vs exact: {statistics.mean(recalls):.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the lab corpus to ingest")
    parser.add_argument("--workdir", default="/var/tmp")
    parser.add_argument(
        "--model-dir", type=Path, default=ROOT / ".cache" / "models" / "all-minilm-l6-v2"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="bench-retrieval-") as work:
        bench_ingestion(Path(work), args.repeat, args.model_dir)
        bench_search(Path(work), args.chunks, args.queries)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
