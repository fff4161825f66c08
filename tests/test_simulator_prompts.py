"""The prompt templates keep their lines apart.

The Jinja environment trims the newline after a block tag (``trim_blocks``), so a
line that ends in ``{% endfor %}`` or ``{% endif %}`` used to run into the next one:
"You said before: "..."The app shows you:" was what every user saw from its second
turn on, and the persona judge read "Looking for: X.The user's line:".
"""

from __future__ import annotations

import pytest

from personas.card import PersonaCard
from simulator.catalog import Item
from simulator.prompts import render

SLATE = [Item(id="1", title="Laugh Riot", facets={"genres": ["Comedy"]}), Item(id="2", title="Blood Manor")]


@pytest.mark.parametrize("name, values", [
    ("turn", dict(max_choices=2, verb="watch", allow_stop=True)),
    ("grounded_voice", dict(chosen=["Laugh Riot"], verb="watch", liked_titles=[], panned_titles=["Blood Manor"])),
])
def test_what_the_user_said_before_is_a_line_of_its_own(name, values):
    lines = render(name, said=["I love a good laugh", "No horror please"], slate=SLATE, **values).splitlines()
    assert lines[0] == 'You said before: "I love a good laugh"; "No horror please"'
    assert lines[1] == "The app shows you:"
    assert lines[2:4] == ["[1] Laugh Riot - Comedy", "[2] Blood Manor"]
    first_turn = render(name, said=[], slate=SLATE, **values).splitlines()
    assert first_turn[0] == "The app shows you:" and first_turn[1:] == lines[2:]


@pytest.mark.parametrize("subtopic", ["heists", None])
def test_the_persona_judge_sees_the_line_apart_from_the_persona(subtopic):
    card = PersonaCard(id="n", name="Maya", summary="A nurse.", likes=["Comedy"], dislikes=["Horror"])
    lines = render("judge_persona", persona=card, subtopic=subtopic, line="Give me a comedy").splitlines()
    tastes = "Likes: Comedy. Dislikes: Horror." + (" Looking for: heists." if subtopic else "")
    assert lines[2:5] == [tastes, "The user's line:", "Give me a comedy"]
