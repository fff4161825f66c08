"""The event log's schema: an events file of an older schema still reads, and keeps its digest."""

from __future__ import annotations

from evals.campaign.events import EVENTS_SCHEMA_VERSION, EventWriter, SlateItem, TurnEvent, events_frame, read_events


def _event(**kw) -> TurnEvent:
    return TurnEvent(**{**dict(config_hash="h", seed=0, model="m", backend="b", variant="ampcf",
                               user_variant="grounded", user_id="u", persona_id="p0", run=0, turn=0), **kw})


def test_a_schema_1_line_reads_its_slate_items_persona_as_component(tmp_path):
    """Schema 1 named a slate item's AMP-CF mixture component 'persona'; schema 2 names it 'component'."""
    new = _event(variant="ampcf+mixture",
                 slate=[SlateItem(id="1", title="A", component=1), SlateItem(id="2", title="B")]).model_dump_json()
    old = (new.replace('"schema_version":2', '"schema_version":1').replace('"component":', '"persona":')
           .replace('"ampcf+mixture"', '"ampcf+personas"'))
    assert old.count('"persona":') == 2 and '"variant":"ampcf+personas"' in old  # the line as schema 1 wrote it
    path = tmp_path / "events.jsonl"
    path.write_text(old + "\n")
    with EventWriter(path) as w:  # a line of this schema after it
        w.write(_event(turn=1, slate=[SlateItem(id="3", title="C", component=0)]))
    first, second = read_events(path)
    assert (first.schema_version, second.schema_version) == (1, EVENTS_SCHEMA_VERSION) == (1, 2)
    assert [s.component for s in first.slate] == [1, None] and second.slate[0].component == 0
    assert '"component":0' in path.read_text().splitlines()[1]  # written under the new name
    frame = events_frame(path)  # what the A/B and the report read: today's names
    assert [[s["component"] for s in slate] for slate in frame["slate"]] == [[1, None], [0]]
    assert list(frame["variant"]) == ["ampcf+mixture", "ampcf"]  # the old reranker name, as the config reads it
    # as JSON an event keeps its schema: the old line reads back to its own bytes, so the content digest and
    # the resume's replay check over an old file are the ones taken when it was written
    assert first.model_dump_json() == old
