"""Benchmark: whole persona extraction vs a bare SentenceTransformer.encode of the same texts.

    python benchmarks/persona_extraction.py [--limit N] [--k auto|N] [--out DIR]

Runs, in one process, (1) a bare ``encode`` of the chunk texts the pipeline will embed
(the floor), then (2) ``extract_personas`` with a cold (empty, temporary) embedding
cache, on the clothing reviews. Prints both wall times, their ratio (target <= 1.2) and
peak resident memory (ru_maxrss). The encoder is loaded once, before timing, and shared.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=0, help="first N reviews only (0 = all 22,641)")
    parser.add_argument("--k", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also write personas.jsonl etc. here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from personas import chunking, extract_personas, load_documents
    from personas.embed import BATCH_SIZE, load_encoder

    corpus = load_documents("clothing-reviews")
    if args.limit:
        corpus = corpus.model_copy(update={"documents": corpus.documents[: args.limit]})
    texts = [c.text for d in corpus for c in chunking.chunk_document(d.id, d.text)[0]]
    encoder = load_encoder()
    encoder.encode(texts[:8])  # warm-up outside the timings

    t = time.perf_counter()
    encoder.encode(texts, batch_size=BATCH_SIZE, normalize_embeddings=True, show_progress_bar=False)
    bare = time.perf_counter() - t

    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        result = extract_personas(corpus, k=int(args.k) if args.k != "auto" else "auto", seed=args.seed,
                                  cache_dir=cache, encoder=encoder, show_progress=False)
        whole = time.perf_counter() - t
    if args.out:
        result.write(args.out)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"documents            {len(corpus)}" + (f" (first {args.limit})" if args.limit else ""))
    print(f"chunks               {len(texts)}")
    print(f"bare encode s        {bare:.1f}  ({len(texts) / bare:.1f} texts/s)")
    print(f"whole extraction s   {whole:.1f}")
    print(f"ratio                {whole / bare:.3f}  (target <= 1.2)")
    print(f"peak RSS MB          {peak_mb:.0f}")
    print(f"stages s             {result.separability['timings_s']}")
    print(f"k                    {result.separability['k']}")


if __name__ == "__main__":
    main()
