"""LLM-written persona cards: claim checking with a scripted client, and the real embedded SmolLM2 on one card."""

from __future__ import annotations

from personas import Document, extract_personas
from personas.card import Passage, PersonaCard
from personas.llm_writer import content_words, supported

DOCS = {
    "knit": ["The wool sweater is soft and warm for winter.", "This cardigan knit is cozy and thick.",
             "Warm wool jumper, perfect in the snow.", "Chunky knit sweater keeps me warm."],
    "swim": ["The swimsuit fits well at the beach.", "Bikini straps broke after one swim in the pool.",
             "Great swimsuit for the beach holiday.", "The one-piece swimsuit dries fast after swimming."],
}


def test_claim_check_needs_a_shared_content_word():
    evidence = content_words("The wool sweaters are soft and warm.")
    assert supported("soft wool", evidence) and supported("Sweater", evidence)
    assert not supported("beach holidays", evidence)
    assert not supported("likes the things", evidence)  # stop words alone support nothing


def test_real_embedded_client_fits_the_protocol_and_claims_are_grounded():
    from simulator.llm import create_client

    from personas.llm_writer import rewrite_cards

    card = _card("p0", DOCS["knit"])
    client = create_client("embedded")
    (out,), stats = rewrite_cards(client, [card], seed=0, max_tokens=160, show_progress=False)
    assert stats["written"] + stats["failures"] == 1 and stats["failures"] == len(stats["errors"])
    assert 0 <= stats["claims_dropped"] <= stats["claims"]
    assert out.passages == card.passages  # passages (provenance) never change
    if out.writer.startswith("llm:"):
        evidence = set().union(*(content_words(p.text) for p in card.passages))
        assert all(supported(x, evidence) for x in out.likes + out.dislikes) and out.summary
    else:
        assert out == card


class ScriptedLLM:
    """A deterministic client with the CardLLM shape: answers from a script keyed by the first passage.

    Not a stand-in for our code: it feeds the writer known answers so that the validation and
    claim-checking logic can be checked exactly.
    """

    model = "scripted"

    def __init__(self, answers: dict):
        self.answers = answers
        self.calls: list[dict] = []

    async def generate(self, messages, *, temperature, max_tokens, seed, json_schema):
        from types import SimpleNamespace

        self.calls.append({"seed": seed, "schema": json_schema, "user": messages[-1]["content"]})
        key = next(k for k in self.answers if k in messages[-1]["content"])
        answer = self.answers[key]
        if answer is None:
            return SimpleNamespace(ok=False, parsed=None, text="", error="server error 500", model=self.model)
        return SimpleNamespace(ok=True, parsed=answer, text=str(answer), error=None, model=self.model)


def _card(pid: str, texts: list[str]) -> PersonaCard:
    return PersonaCard(id=pid, name=f"extractive {pid}", summary="extractive summary",
                       passages=[Passage(doc_id=f"{pid}-{i}", text=t) for i, t in enumerate(texts)],
                       likes=["x"], dislikes=[])


def test_llm_writer_drops_unsupported_claims_and_keeps_cards_on_failure():
    from personas.llm_writer import SCHEMA, rewrite_cards

    cards = [_card("p0", DOCS["knit"]), _card("p1", DOCS["swim"]), _card("p2", ["Linen shirts wrinkle."])]
    llm = ScriptedLLM({
        "wool sweater": {"name": "Cozy knit lovers", "summary": "They want warm wool. They fly to Mars on weekends.",
                         "likes": ["warm wool", "chunky knit", "racing cars"], "dislikes": ["sports cars"]},
        "swimsuit": {"name": "x", "summary": 5, "likes": [], "dislikes": []},  # fails validation
        "Linen": None,  # the call itself failed
    })
    out, stats = rewrite_cards(llm, cards, seed=7, pinned={"p0": (["Knitwear"], [])}, show_progress=False)
    knit, swim, linen = out
    assert knit.writer == "llm:scripted" and knit.name == "Cozy knit lovers"
    assert knit.likes == ["Knitwear", "warm wool", "chunky knit"]  # pinned first, "racing cars" dropped
    assert knit.dislikes == [] and knit.summary == "They want warm wool."
    assert swim == cards[1] and linen == cards[2]  # failures leave the extractive card untouched
    assert stats["written"] == 1 and stats["failures"] == 2 and len(stats["errors"]) == 2
    assert stats["claims"] == 4 and stats["claims_dropped"] == 2 and stats["summary_sentences_dropped"] == 1
    assert any("server error 500" in e for e in stats["errors"])
    assert sorted(c["seed"] for c in llm.calls) == [7, 8, 9] and all(c["schema"] == SCHEMA for c in llm.calls)
    assert all("Passage 1:" in c["user"] for c in llm.calls)  # the LLM sees the passages only


def test_pipeline_with_llm_records_stats_and_keeps_provenance():
    docs = [Document(id=f"{t}{i}", text=s) for t, ss in DOCS.items() for i, s in enumerate(ss)]
    llm = ScriptedLLM({"": {"name": "Zeppelin pilots", "summary": "They fly zeppelins.", "likes": ["zeppelins"],
                            "dislikes": []}})
    res = extract_personas(docs, k=2, seed=3, llm=llm, show_progress=False)
    stats = res.separability["llm"]
    assert stats["written"] == 2 and stats["claims"] == 2 and stats["claims_dropped"] == 2
    assert stats["summary_sentences_dropped"] == 2
    for card in res.cards:  # nothing unsupported survives: the extractive name and summary stay
        assert card.writer == "llm:scripted" and "Zeppelin" not in card.name and "zeppelin" not in card.summary
        assert "zeppelins" not in card.likes and {p.doc_id for p in card.passages} <= {d.id for d in docs}
    assert res.config["llm"] == "scripted"
