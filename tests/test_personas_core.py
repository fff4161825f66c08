"""personas/: loaders, chunking, dedup, K selection and separability on hand-made data (no model)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from personas import PersonaError, load_documents
from personas.chunking import chunk_document, chunk_text, clean
from personas.cluster import choose_k, find_duplicates
from personas.keyphrases import ctfidf_top
from personas.separability import between_within_ratio, pair_confusion, pc1_variance_share, separability_report


# -- loaders ---------------------------------------------------------------------------------------

def test_folder_skips_binary_and_non_utf8_and_names_them(tmp_path):
    (tmp_path / "a.txt").write_text("I love linen dresses.", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("# Notes\nJeans run small.", encoding="utf-8")
    (tmp_path / "img.txt").write_bytes(b"\x89PNG\x00\x00\x01")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    (tmp_path / "ignored.bin").write_bytes(b"\x00")
    corpus = load_documents(str(tmp_path))
    assert [d.id for d in corpus] == ["a.txt", "sub/b.md"]
    reasons = {s.id: s.reason for s in corpus.skipped}
    assert reasons["img.txt"].startswith("binary")
    assert reasons["latin.txt"].startswith("not UTF-8")
    assert reasons["empty.md"] == "empty text"


def test_tables_text_and_id_columns_metadata_and_facts(tmp_path):
    rows = [{"uid": f"u{i}", "body": f"review number {i}", "rating": 1 + i % 5, "dept": ["Tops", "Dresses"][i % 2]}
            for i in range(10)]
    rows[3]["body"] = ""
    pd.DataFrame(rows).to_csv(tmp_path / "r.csv", index=False)
    pd.DataFrame(rows).to_parquet(tmp_path / "r.parquet")
    with open(tmp_path / "r.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
        fh.write("{not json\n")
    for name in ("r.csv", "r.parquet", "r.jsonl"):
        corpus = load_documents(str(tmp_path / name), text_column="body", id_column="uid")
        assert len(corpus) == 9 and corpus[0].id == "u0"
        assert corpus[1].metadata == {"rating": 2, "dept": "Dresses"}
        assert corpus.fact_fields["dept"].choices == ["Dresses", "Tops"]
        assert corpus.rating_field == "rating" and corpus.low_rating_max == 2.0
        assert {s.id for s in corpus.skipped} >= {"u3"}
    jl = load_documents(str(tmp_path / "r.jsonl"), text_column="body")
    assert jl[0].id == "1"  # no id column: JSONL line number
    assert any(s.id == "line 11" and "JSON" in s.reason for s in jl.skipped)
    csv = load_documents(str(tmp_path / "r.csv"), text_column="body")
    assert csv[0].id == "0"  # row number


def test_hf_dataset_folder(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"text": ["one doc", "two doc"], "lang": ["en", "fr"]}).save_to_disk(tmp_path / "ds")
    corpus = load_documents(str(tmp_path / "ds"))
    assert [d.text for d in corpus] == ["one doc", "two doc"] and corpus[1].metadata["lang"] == "fr"


def test_bad_sources_give_one_line_errors(tmp_path):
    pd.DataFrame({"words": ["x"], "stars": [3]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(PersonaError, match=r"'review_text' not found \(available columns: words, stars\)"):
        load_documents(str(tmp_path / "t.csv"), text_column="review_text")
    with pytest.raises(PersonaError, match="no text column given"):
        load_documents(str(tmp_path / "t.csv"))
    (tmp_path / "e.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(PersonaError, match="empty source"):
        load_documents(str(tmp_path / "e.jsonl"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(PersonaError, match="no usable documents"):
        load_documents(str(tmp_path / "empty"))
    (tmp_path / "bin.csv").write_bytes(b"text\n\xff\xfe\xfa\n")
    with pytest.raises(PersonaError, match="not UTF-8"):
        load_documents(str(tmp_path / "bin.csv"))
    with pytest.raises(PersonaError, match="no such file"):
        load_documents(str(tmp_path / "missing.csv"))
    pd.DataFrame({"id": ["a", "a"], "text": ["x", "y"]}).to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(PersonaError, match="duplicate id 'a'"):
        load_documents(str(tmp_path / "d.csv"), id_column="id")


def test_packaged_movielens_users():
    corpus = load_documents("ml-100k-users")
    assert len(corpus) == 943 and corpus.genre_field == "genres"
    doc = corpus[0]
    assert doc.id == "1" and doc.text.startswith("Favourite genres: ")
    assert doc.text.endswith(" About: A 24-year-old male technician.")
    favourites = doc.text.partition(". Loves: ")[0].removeprefix("Favourite genres: ").split(", ")
    assert len(favourites) == 3 and favourites[0] == doc.metadata["favourite genre"]
    assert "Sci-Fi" in corpus.fact_fields["favourite genre"].choices
    assert all(d.metadata["favourite genre"] in corpus.fact_fields["favourite genre"].choices for d in corpus)


# -- chunking --------------------------------------------------------------------------------------

def test_chunks_are_sentence_aligned_and_bounded():
    text = " ".join(f"Sentence number {i} is here." for i in range(100))
    chunks = chunk_text(text, max_chars=120)
    assert all(len(c) <= 120 for c in chunks)
    assert all(c.endswith(".") for c in chunks)  # never cut inside a sentence
    assert " ".join(chunks) == clean(text)
    assert chunk_text("word " * 100, max_chars=50)[0] == " ".join(["word"] * 10)  # long sentence: cut at words
    assert all(len(c) <= 50 for c in chunk_text("x" * 175, max_chars=50))
    assert clean("a\x00b\n\n c\t") == "a b c"


def test_ten_megabyte_document_is_capped_evenly():
    text = ("The fabric pills after one wash. " * 320_000)[:10_000_000]
    chunks, total = chunk_document("big", text, max_chars=1000, max_chunks=64)
    assert total > 9000 and len(chunks) == 64
    assert chunks[0].index == 0 and chunks[-1].index > total * 0.9  # spread over the whole document


# -- dedup, K selection, key phrases ---------------------------------------------------------------

def _planted(k=4, per=40, dim=32, spread=0.15, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim))
    x = np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), np.repeat(np.arange(k), per)


@pytest.mark.parametrize("k", [3, 5])
def test_choose_k_finds_planted_clusters(k):
    x, truth = _planted(k=k, seed=k)
    chosen, labels, curve = choose_k(x, seed=0, k_range=(2, 8))
    assert chosen == k
    assert [p["k"] for p in curve] == list(range(2, 9))
    for c in range(k):  # each planted cluster maps to exactly one label
        assert len(set(labels[truth == c].tolist())) == 1


def test_duplicates_exact_and_near():
    x, _ = _planted(k=2, per=3, spread=1.0)
    texts = [f"t{i}" for i in range(len(x))]
    x = np.concatenate([x, x[:1], (x[1] + 0.001)[None]])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    texts += ["other", "near"]
    texts[2] = "T0 "  # exact duplicate of row 0 after normalising case/space
    dup = find_duplicates(texts, x)
    assert dup[2] == 0 and dup[6] == 0 and dup[7] == 1
    assert (dup[[0, 1, 3, 4, 5]] == -1).all()


def test_ctfidf_picks_distinctive_phrases():
    tops = ctfidf_top(["linen dress linen dress summer fabric", "denim jeans denim jeans waist fabric"], top_n=2)
    assert tops[0] == ["linen dress"] or set(tops[0]) <= {"linen dress", "linen", "dress", "summer"}
    assert all("denim" not in p for p in tops[0]) and any("denim" in p for p in tops[1])


# -- separability on hand-checkable cases ----------------------------------------------------------

def test_between_within_ratio_by_hand():
    x = np.array([[0, 1], [0, -1], [10, 1], [10, -1]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    assert between_within_ratio(x, labels) == pytest.approx(10.0)  # centroids 10 apart, points 1 from centre


def test_pc1_share_by_hand():
    line = np.array([[0, 0], [1, 0], [2, 0]], dtype=float)
    assert pc1_variance_share(line) == pytest.approx(1.0)
    triangle = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    assert pc1_variance_share(triangle) == pytest.approx(0.5)


def test_pair_confusion_gaussian_tail_by_hand():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.normal(-1, 1, 200_000), np.zeros(200_000)])
    b = np.column_stack([rng.normal(1, 1, 200_000), np.zeros(200_000)])
    # centroids at -1, +1, unit sd: each tail beyond the midpoint = Phi(-1) = 0.1587
    assert pair_confusion(a, b, np.array([-1.0, 0]), np.array([1.0, 0])) == pytest.approx(0.1587, abs=0.003)
    far = pair_confusion(a * 0.01, b * 0.01 + np.array([100.0, 0]), np.array([-0.01, 0]), np.array([100.01, 0]))
    assert far < 1e-6


def test_report_alarm_on_collapse_and_not_on_distinct():
    x, labels = _planted(k=4, per=30, spread=0.05)
    rep = separability_report(x, labels, seed=0)
    assert rep["k"] == 4 and not rep["collapse_alarm"] and rep["silhouette"] > 0.5
    assert len(rep["confusion"]) == 6 and rep["max_confusion"] < 0.01
    # three personas on one line, overlapping: pc1 share ~1 -> alarm
    rng = np.random.default_rng(1)
    line = np.concatenate([np.column_stack([rng.normal(m, 1.0, 100), rng.normal(0, 0.01, 100)]) for m in (0, 1, 2)])
    rep2 = separability_report(line, np.repeat([0, 1, 2], 100), seed=0)
    assert rep2["pc1_variance_share"] > 0.99 and rep2["collapse_alarm"]


def test_hdbscan_finds_planted_clusters_and_marks_noise():
    from personas.cluster import hdbscan

    x, truth = _planted(k=3, per=60, dim=32, spread=0.1, seed=3)
    rng = np.random.default_rng(0)
    outliers = rng.normal(size=(3, 32)) * 3
    x = np.concatenate([x, (outliers / np.linalg.norm(outliers, axis=1, keepdims=True)).astype(np.float32)])
    labels = hdbscan(x, seed=0)
    assert len(set(labels[:180].tolist()) - {-1}) == 3
    for c in range(3):
        found = labels[:180][truth == c]
        assert len(set(found[found >= 0].tolist())) == 1 and (found >= 0).mean() > 0.9
    assert (labels[180:] == -1).all()
