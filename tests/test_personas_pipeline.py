"""personas/ end to end with the real MiniLM encoder: planted topics, provenance, bad input, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from personas import Corpus, Document, PersonaError, extract_personas, load_documents, read_personas

TOPICS = {
    "running": ["I run ten kilometres every morning before work.", "My marathon training plan has long runs on Sunday.",
                "New running shoes made my knees feel better on the trail.", "Interval sprints on the track are brutal.",
                "I tracked my pace and heart rate on the morning jog.", "Trail running in the hills is my favourite.",
                "After the half marathon my legs were sore for days.", "I stretch my calves after every run."],
    "baking": ["I baked sourdough bread with a crunchy crust.", "The chocolate cake needed more sugar and butter.",
               "My oven bakes cookies unevenly on the top rack.", "Kneading dough for an hour makes soft bread.",
               "I tried a lemon tart recipe with fresh pastry.", "Cinnamon rolls rise best in a warm kitchen.",
               "The croissants took two days of folding butter.", "Banana bread is my favourite way to use old fruit."],
    "taxes": ["Filing my income tax return took all weekend.", "The accountant found a deduction for my home office.",
              "I owe capital gains tax on the shares I sold.", "Payroll withholding was wrong on my salary slip.",
              "The tax office sent a letter about my VAT filing.", "I keep receipts for every deductible expense.",
              "Property tax on the house went up again this year.", "Tax software crashed before the filing deadline."],
}


@pytest.fixture(scope="module")
def encoder():
    from personas.embed import load_encoder

    return load_encoder()


def test_planted_topics_recovered_with_provenance(encoder, tmp_path):
    docs = [Document(id=f"{t}-{i}", text=s) for t, ss in TOPICS.items() for i, s in enumerate(ss)]
    docs.append(Document(id="dup", text=docs[0].text.upper()))  # exact duplicate (case-insensitive)
    res = extract_personas(docs, k="auto", seed=0, encoder=encoder, cache_dir=tmp_path / "cache",
                           show_progress=False, k_range=(2, 6))
    assert res.separability["k"] == 3 and [p["k"] for p in res.separability["k_curve"]] == [2, 3, 4, 5, 6]
    by_doc = {a["doc_id"]: a for a in res.assignments}
    for topic in TOPICS:  # each planted topic is exactly one persona
        assert len({by_doc[f"{topic}-{i}"]["persona_id"] for i in range(8)}) == 1
    assert by_doc["dup"]["status"] == "duplicate" and by_doc["dup"]["persona_id"] == by_doc["running-0"]["persona_id"]
    assert res.separability["n_duplicates"] == 1 and res.separability["n_documents"] == 25
    ids = {d.id for d in docs}
    for card in res.cards:
        assert card.passages and all(p.doc_id in ids for p in card.passages)
        assert len({p.doc_id for p in card.passages}) == len(card.passages)
        assert len(card.centroid) == 384 and card.likes
    # the cache serves a second run without encoding
    from personas.embed import Embedder

    emb = Embedder(cache_dir=tmp_path / "cache", encoder=encoder, show_progress=False)
    emb.embed([d.text for d in docs[:5]])
    assert emb.hits == 5 and emb.misses == 0
    out = res.write(tmp_path / "out")
    assert len(read_personas(out / "personas.jsonl")) == 3
    assert json.loads((out / "separability.json").read_text())["k"] == 3


def test_hdbscan_method_assigns_or_marks_noise(encoder):
    docs = [Document(id=f"{t}-{i}", text=s) for t, ss in TOPICS.items() for i, s in enumerate(ss)]
    res = extract_personas(docs, method="hdbscan", encoder=encoder, show_progress=False)
    rows = {a["doc_id"]: a for a in res.assignments}
    assert set(rows) == {d.id for d in docs} and res.separability["k"] == len(res.cards) >= 2
    assert {a["status"] for a in rows.values()} <= {"assigned", "noise"}
    assert res.separability["noise"] == sum(a["status"] == "noise" for a in rows.values())
    for topic in TOPICS:  # clustered members of one topic share one persona
        assert len({rows[f"{topic}-{i}"]["persona_id"] for i in range(8)} - {None}) <= 1


def test_fewer_documents_than_k_and_bad_k(encoder):
    docs = [Document(id=str(i), text=t) for i, t in enumerate(TOPICS["taxes"][:3])]
    with pytest.raises(PersonaError, match="fewer usable documents .* than K=5"):
        extract_personas(docs, k=5, encoder=encoder, show_progress=False)
    with pytest.raises(PersonaError, match="K must be at least 2"):
        extract_personas(docs, k=1, encoder=encoder, show_progress=False)
    with pytest.raises(PersonaError, match="unknown method"):
        extract_personas(docs, method="spectral", encoder=encoder, show_progress=False)
    with pytest.raises(PersonaError, match="empty source"):
        extract_personas([], encoder=encoder, show_progress=False)


def test_huge_document_is_chunk_capped_and_recorded(encoder):
    docs = [Document(id=f"d{i}", text=s) for i, s in enumerate(TOPICS["baking"] + TOPICS["taxes"])]
    docs.append(Document(id="huge", text=("I baked sourdough bread again today. " * 280_000)))  # ~10 MB
    res = extract_personas(docs, k=2, encoder=encoder, show_progress=False, max_chunks=8)
    row = next(a for a in res.assignments if a["doc_id"] == "huge")
    assert row["n_chunks_used"] == 8 and row["n_chunks_total"] > 9000 and "capped" in row["reason"]
    assert row["persona_id"] == next(a for a in res.assignments if a["doc_id"] == "d0")["persona_id"]
    assert res.separability["n_docs_chunk_capped"] == 1


def test_movielens_cards_have_catalog_genres_and_valid_facts(encoder):
    full = load_documents("ml-100k-users")
    corpus = full.model_copy(update={"documents": full.documents[:90]})
    res = extract_personas(corpus, k=3, encoder=encoder, show_progress=False)
    genres = set(full.fact_fields["favourite genre"].choices) - {"none"}
    assert any(card.likes and card.likes[0] in genres for card in res.cards)
    for card in res.cards:
        assert {f.key for f in card.facts} == {"age group", "gender", "occupation", "favourite genre"}
        ids = {a["doc_id"] for a in res.assignments if a["persona_id"] == card.id}
        for fact in card.facts:
            assert fact.value in fact.choices and fact.evidence and set(fact.evidence) <= ids
        assert not set(card.likes) & set(card.dislikes)
        if card.likes[0] in genres:  # the Q&A answer agrees with the card's likes
            assert next(f.value for f in card.facts if f.key == "favourite genre") == card.likes[0]
        members = " ".join(d.text for d in corpus if d.id in ids)
        titles = [x for x in card.likes + card.dislikes if x not in genres]
        assert titles and all(f"{t} (" in members for t in titles)  # whole titles from the members' own documents


def test_cli_on_300_clothing_reviews(tmp_path):
    from evals.cli import app
    from personas.infra.assets import clothing_reviews_parquet

    frame = pd.read_parquet(clothing_reviews_parquet()).iloc[:300]
    frame.to_parquet(tmp_path / "reviews.parquet")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["personas", "extract", str(tmp_path / "reviews.parquet"), "--out", str(out),
                                      "--text-column", "Review Text", "--k-max", "6", "--quiet",
                                      "--cache-dir", str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert "silhouette" in result.output and "between_within_ratio" in result.output
    cards = read_personas(out / "personas.jsonl")
    rows = [json.loads(x) for x in (out / "assignments.jsonl").read_text().splitlines()]
    assert sorted(int(r["doc_id"]) for r in rows) == list(range(300))  # every input accounted for
    source_ids = {str(i) for i in range(300) if isinstance(frame["Review Text"].iloc[i], str)}
    skipped = {r["doc_id"] for r in rows if r["status"] == "skipped"}
    assert skipped == {str(i) for i in range(300)} - source_ids
    for card in cards:
        assert card.passages and {p.doc_id for p in card.passages} <= source_ids
        for p in card.passages:
            assert p.text in " ".join(str(frame["Review Text"].iloc[int(p.doc_id)]).split())
        assert {f.key for f in card.facts} >= {"Department Name"}
        members = " ".join(str(frame["Review Text"].iloc[int(r["doc_id"])]).lower() for r in rows
                           if r["persona_id"] == card.id).replace("-", " ")
        assert card.likes and all(w in members for phrase in card.likes + card.dislikes for w in phrase.split())
        assert all(r["config_hash"] and r["model"] and r["seed"] == 0 for r in rows)
        assert card.config_hash == rows[0]["config_hash"] and card.embedding_model == rows[0]["model"] and card.seed == 0
    sep = json.loads((out / "separability.json").read_text())
    assert {"k", "silhouette", "between_within_ratio", "pc1_variance_share", "n_documents", "n_chunks",
            "collapse_alarm", "k_curve", "confusion"} <= set(sep)
    assert sep["k"] == len(cards) and sep["n_documents"] == len(source_ids)


def test_cli_bad_input_one_line_errors(tmp_path):
    from evals.cli import app

    pd.DataFrame({"body": ["a", "b"], "x": [1, 2]}).to_csv(tmp_path / "t.csv", index=False)
    runner = CliRunner()
    r = runner.invoke(app, ["personas", "extract", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                            "--text-column", "review"])
    assert r.exit_code == 2 and r.output.strip().splitlines()[-1] == \
        f"error: {tmp_path / 't.csv'}: text column 'review' not found (available columns: body, x)"
    assert "Traceback" not in r.output
    r = runner.invoke(app, ["personas", "extract", str(tmp_path / "t.csv"), "--out", str(tmp_path / "o"),
                            "--k", "5", "--no-cache"])
    assert r.exit_code == 2 and "fewer usable documents (2) than K=5" in r.output
