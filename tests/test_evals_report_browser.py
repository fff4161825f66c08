"""The report of a whole campaign folder, driven in headless Chromium: the persona gallery, the validity
panel, and the transcript browser clicked through (grid, filters, paging, a turn opened).

The clicks are real DOM clicks and change events, dispatched by a scenario script appended to a copy
of the report; it writes what the page then shows into #scenario, which --dump-dom returns.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

from evals.campaign.events import read_events
from evals.report.summary import write_campaign_report
from tests.campaign_fixtures import HOSTILE_TITLE, PERSONAS, reasons_key, write_campaign
from tests.chromium import dump_dom

SCENARIO = """
<script>
const HOSTILE = %s;
window.addEventListener("load", () => scenario().catch(e => {
  document.getElementById("scenario").textContent = JSON.stringify({error: String(e.stack || e)});
}));
async function scenario() {
  const tick = () => new Promise(r => setTimeout(r, 50));
  const shown = () => [...document.querySelectorAll("#sessions article.session")];
  const info = () => document.getElementById("page-info").textContent.trim();
  const out = {};
  // 1. from the gallery: a persona card's link to its transcripts (one click)
  document.querySelector("#persona-p1 a.to-transcripts").click();
  await tick();
  out.gallery = {personas: shown().map(s => s.dataset.persona), info: info()};
  // 2. the question of the issue, in ONE click: what did persona p0's users say to ampcf in run 1?
  document.querySelector('button.pick[data-persona="p0"][data-variant="ampcf"][data-run="1"]').click();
  out.question = shown().map(s => ({
    user: s.dataset.user, user_variant: s.dataset.userVariant, persona: s.dataset.persona,
    variant: s.dataset.variant, run: s.dataset.run,
    said: [...s.querySelectorAll("ol.said > li")].map(li => li.firstChild.textContent),
    visible: [...s.querySelectorAll("ol.said > li")].every(li => li.getBoundingClientRect().height > 0)}));
  out.hash = location.hash;
  // 3. narrow with a filter: user variant = grounded
  const uv = document.getElementById("f-user_variant");
  uv.value = "grounded";
  uv.dispatchEvent(new Event("change"));
  out.grounded = shown().map(s => s.dataset.userVariant);
  // 4. open the turns of a session the judge flagged
  const first = shown().find(s => s.querySelector("header").textContent.includes("flagged"));
  first.querySelector("details.turns > summary").click();
  await tick();
  out.turns = [...first.querySelectorAll("div.turn")].map(t => ({
    vectors: [...t.querySelectorAll("td.slate-vector")].map(td => td.textContent),
    reasons: [...t.querySelectorAll("ul.reasons li")].map(li => li.textContent),
    text: t.textContent}));
  out.layers = first.querySelector(".layers").textContent;
  out.opened = {user: first.dataset.user, user_variant: first.dataset.userVariant};
  // 5. clear, then page on
  document.getElementById("f-clear").click();
  out.all = {n: Number(document.getElementById("browser").dataset.matches), shown: shown().length, info: info()};
  document.getElementById("next").click();
  out.page2 = {shown: shown().length, info: info()};
  // 6. words in an utterance, and only flagged sessions
  const text = document.getElementById("f-text");
  text.value = "hate";
  text.dispatchEvent(new Event("input"));
  out.hate = shown().map(s => [...s.querySelectorAll(".said .utterance")].map(u => u.textContent).join(" | "));
  document.getElementById("f-clear").click();
  document.getElementById("f-flagged").click();
  out.flagged = shown().map(s => s.querySelector("header").textContent);
  out.flaggedN = Number(document.getElementById("browser").dataset.matches);
  // 7. the hostile title, on every page: shown as text, never parsed into an element
  document.getElementById("f-clear").click();
  out.hostile = 0;
  out.injected = 0;
  for (let page = 0; page < 3; page++) {
    for (const d of document.querySelectorAll("details.turns")) d.open = true;
    await tick();
    out.hostile += [...document.querySelectorAll("div.turn td")].filter(td => td.textContent === HOSTILE).length;
    out.injected += document.querySelectorAll('img[src="x"]').length;
    document.getElementById("next").click();
  }
  out.panel = [...document.querySelectorAll("#validity-panel tr[data-check]")].map(
    tr => [tr.dataset.check, tr.dataset.status]);
  document.getElementById("scenario").textContent = JSON.stringify(out);
}
</script>
<pre id="scenario"></pre>
"""


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> Path:
    return write_campaign(tmp_path_factory.mktemp("campaign"), users_per_persona=2, runs=2, turns=3)


@pytest.fixture(scope="module")
def report(campaign) -> tuple[Path, list[str], list[dict]]:
    return write_campaign_report(campaign)


@pytest.fixture(scope="module")
def scenario(campaign, report, tmp_path_factory) -> dict:
    page = report[0].read_text(encoding="utf-8")
    driven = campaign / "driven.html"
    driven.write_text(page.replace("</body>", SCENARIO % json.dumps(HOSTILE_TITLE) + "</body>"), encoding="utf-8")
    dom = dump_dom(driven.as_uri(), tmp_path_factory.mktemp("profile"), budget_ms=10_000)
    found = re.search(r'<pre id="scenario">(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the scenario did not finish: " + dom[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert "error" not in result, result.get("error")
    return result


def _said(campaign: Path, persona: str, variant: str, run: int) -> dict[tuple[str, str], list[str]]:
    """What the events say the browser must show: {(user_variant, user): each turn's line or failure}."""
    out: dict[tuple[str, str], list[str]] = {}
    for e in sorted(read_events(campaign / "events.jsonl"), key=lambda e: e.turn):
        if (e.persona_id, e.variant, e.run) == (persona, variant, run):
            line = f"“{e.utterance}”" if e.ok else f"failed: {e.error}"
            out.setdefault((e.user_variant, e.user_id), []).append(line)
    return out


def test_one_click_answers_what_a_personas_users_said_to_ampcf_in_run_1(campaign, scenario):
    expected = _said(campaign, "p0", "ampcf", 1)
    got = {(s["user_variant"], s["user"]): s["said"] for s in scenario["question"]}
    assert got == expected and len(got) == 4  # 2 users x 2 user variants, every line in turn order
    assert all(s["visible"] for s in scenario["question"])  # on screen, not folded away
    assert {(s["persona"], s["variant"], s["run"]) for s in scenario["question"]} == {("p0", "ampcf", "1")}
    assert scenario["hash"] == "#transcripts?variant=ampcf&persona_id=p0&run=1"  # a link to this view


def test_gallery_link_and_filters_narrow_the_sessions(scenario):
    assert scenario["gallery"]["personas"] and set(scenario["gallery"]["personas"]) == {"p1"}
    assert scenario["gallery"]["info"].endswith("16 of 48 sessions")  # 2 users x 2 user variants x 2 variants x 2 runs
    assert scenario["grounded"] == ["grounded", "grounded"]
    assert scenario["all"] == {"n": 48, "shown": 20, "info": "page 1 of 3 · 48 of 48 sessions"}
    assert scenario["page2"] == {"shown": 20, "info": "page 2 of 3 · 48 of 48 sessions"}
    assert scenario["hate"] and all("hate" in said.lower() for said in scenario["hate"])
    assert 0 < scenario["flaggedN"] < 48 and all("flagged" in h or "failed" in h for h in scenario["flagged"])


def test_an_opened_turn_shows_slate_attribution_reasons_and_layers(campaign, scenario):
    turns = scenario["turns"]
    assert len(turns) == 3
    # AMP-CF: every slate item names its mixture component and that component's genres in this session
    vectors = [v for t in turns for v in t["vectors"]]
    assert len(vectors) == 15 and all(re.fullmatch(r"[01] \([A-Za-z-]+(, [A-Za-z-]+)?\)", v) for v in vectors)
    # the judge's reasons as the session scorer gave them (the events keep only the scores)
    expected = json.loads((campaign / "judge_reasons.json").read_text())
    for t, shown in enumerate(turns):
        key = reasons_key("ampcf", "grounded", scenario["opened"]["user"], 1, t)
        if key not in expected:
            assert "failed:" in shown["text"]
            continue
        assert shown["reasons"] == expected[key]
        assert ("the judge found nothing to flag" in shown["text"]) == (not expected[key])
    assert any(t["reasons"] for t in turns)
    assert "p(like)" in turns[0]["text"] or "failed" in turns[0]["text"]  # grounded: the written-down decision
    layers = scenario["layers"]
    assert "seeks:" in layers and "twin of real user" in layers and "context: companions: " in layers
    assert scenario["hostile"] > 0 and scenario["injected"] == 0  # the hostile title stayed text


def test_validity_panel_and_gallery_are_in_the_page(report, scenario):
    page = report[0].read_text(encoding="utf-8")
    checks = dict(scenario["panel"])
    assert checks["failed turns"] in {"ok", "bad"} and checks["fidelity to held-out real behaviour"] == "missing"
    assert any(c.startswith("stability across runs, grounded") for c in checks)
    power = {c: v for c, v in checks.items() if c.startswith("power of the A/B, ampcf vs mf, ")}
    assert power and set(power.values()) <= {"ok", "bad"}  # one per user variant, never pooled
    assert any(c.startswith("A/A check (a variant against itself, ") for c in checks)
    assert checks["drift against real users' own drift"] == "missing"  # no real_drift.json beside this run
    for pid, name, likes, _ in PERSONAS:
        card = page.split(f'<div class="card" id="persona-{pid}"')[1].split('<div class="card"')[0]
        assert html.escape(name) in card and all(x in card for x in likes)
        assert card.count('class="passage"') == 2 and f"doc-{pid[1]}0" in card  # two passages, with doc ids
        assert "<svg class='minimap'" in card
    assert 'id="collapse-alarm"' in page and "img class='plot' id='plot-personas'" in page
    assert HOSTILE_TITLE not in page  # escaped in the inline JSON too
    for remote in ('src="http', "src='http", 'href="http', "url(http", "<link "):
        assert remote not in page  # nothing from the network
