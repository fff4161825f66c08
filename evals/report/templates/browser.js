// The report's transcript browser: filters, a persona x recommender x run grid, paging.
// Reads the JSON in #transcripts-data (shape: evals/report/transcripts.py). No server, no network; the DOM
// is built with textContent only, so nothing from the events is ever parsed as HTML.
(() => {
  "use strict";
  const data = JSON.parse(document.getElementById("transcripts-data").textContent);
  const sessions = data.sessions;
  const PAGE = 20;
  const FILTERS = ["variant", "user_variant", "persona_id", "run"];
  const state = {variant: "", user_variant: "", persona_id: "", run: "", text: "", flagged: false, page: 0};
  const $ = id => document.getElementById(id);

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") node.className = v;
      else if (k.startsWith("data-") || k === "title") node.setAttribute(k, v);
      else node[k] = v;
    }
    for (const c of children.flat()) {
      if (c !== null && c !== undefined && c !== false) node.append(c instanceof Node ? c : String(c));
    }
    return node;
  }
  const personaName = id => data.personas[id] || id;
  const itemTitle = id => (data.items[id] || [id])[0];
  const itemGenres = id => (data.items[id] || [id, []])[1];
  const distinct = key => [...new Set(sessions.map(s => String(s[key])))].sort((a, b) => a.localeCompare(b, undefined, {numeric: true}));

  // ---- verdicts as short badges, reasons as a list
  function badges(t) {
    if (!t.ok) return [el("span", {class: "badge bad"}, "failed")];
    const v = t.verdicts, out = [];
    if (v.prompt_to_line !== null) {
      out.push(el("span", {class: "badge " + (v.prompt_to_line ? "good" : "bad")},
        v.prompt_to_line ? "fits persona" : "contradicts persona"));
    }
    if (v.line_to_line !== null) {
      out.push(el("span", {class: "badge " + (v.line_to_line === 1 ? "good" : "bad")},
        v.line_to_line === 1 ? "fits earlier lines" : `conflicts with ${Math.round(100 * (1 - v.line_to_line))}% of earlier lines`));
    }
    if (v.qa !== null) out.push(el("span", {class: "badge " + (v.qa ? "good" : "bad")}, v.qa ? "Q&A right" : "Q&A wrong"));
    return out;
  }

  function layersLine(s) {
    const L = data.layers[s.layers] || {};
    const ctx = Object.entries(L.context || {}).map(([k, v]) => `${k}: ${v}`).join(" · ");
    const traits = Object.entries(L.traits || {}).map(([k, v]) => `${k} ${Number(v).toFixed(2)}`).join(", ");
    return el("div", {class: "layers"},
      el("div", {}, `seeks: ${L.subtopic ?? "–"}`, L.twin ? ` · twin of real user ${L.twin}` : ""),
      el("div", {}, `context: ${ctx || "–"}`), el("div", {}, `traits: ${traits || "–"}`));
  }

  function turnDetail(s, t) {
    const grounded = Object.keys(t.decision).length > 0;
    const head = el("tr", {}, el("th", {class: "l"}, "item"), el("th", {class: "l"}, "genres"),
      el("th", {class: "l"}, "from mixture component"), el("th", {}, "rating"), el("th", {}, "chosen"),
      grounded ? el("th", {title: "P(take | shown) / P(like | watched)"}, "p(take) / p(like)") : null);
    const rows = t.slate.map(([id, vec]) => {
      const d = t.decision[id];
      const why = d ? Object.entries(d[1]).map(([k, v]) => `${k} ${v >= 0 ? "+" : ""}${v}`).join(", ") : "";
      return el("tr", {class: t.chosen.includes(id) ? "chosen" : ""},
        el("td", {class: "l"}, itemTitle(id)), el("td", {class: "l"}, itemGenres(id).join(", ")),
        el("td", {class: "l slate-vector"}, vec === null ? "–" : `${vec} (${s.vectors[vec] || "?"})`),
        el("td", {}, t.ratings[id] ?? "–"), el("td", {}, t.chosen.includes(id) ? "✓" : ""),
        grounded ? el("td", {title: why}, d ? `${d[2] ?? "–"} / ${d[0] ?? "–"}` : "–") : null);
    });
    let reasons;
    if (!t.ok) reasons = el("p", {class: "warn"}, `failed: ${t.error}`);
    else if (t.reasons === null) reasons = el("p", {class: "meta"}, "judge's reasons not available for this turn");
    else if (t.reasons.length) reasons = el("ul", {class: "reasons"}, t.reasons.map(r => el("li", {}, r)));
    else reasons = el("p", {class: "meta"}, "the judge found nothing to flag");
    return el("div", {class: "turn", "data-turn": t.turn},
      el("div", {}, el("b", {}, `turn ${t.turn}`), " ", badges(t),
        el("span", {class: "meta"}, ` · ${t.tokens[0]} tokens in / ${t.tokens[1]} out · ${t.latency_s} s`)),
      t.ok ? el("p", {class: "utterance"}, `“${t.utterance}”`) : null,
      el("table", {}, head, rows), reasons);
  }

  function sessionCard(s) {
    const card = el("article", {class: "session", "data-persona": s.persona_id, "data-variant": s.variant,
      "data-run": s.run, "data-user-variant": s.user_variant, "data-user": s.user_id});
    card.append(
      el("header", {}, `${personaName(s.persona_id)} · ${s.user_id} (${s.user_variant}) · ${s.variant} · run ${s.run}`,
        el("span", {class: "meta"}, ` · chose ${s.chosen} of ${s.shown} shown`,
          s.contradictions ? ` · ${s.contradictions} flagged` : "", s.failed ? ` · ${s.failed} failed` : "",
          ` · seed ${s.seed}`)),
      layersLine(s),
      el("ol", {class: "said", start: 0}, s.turns.map(t => el("li", {},
        t.ok ? el("span", {class: "utterance"}, `“${t.utterance}”`) : el("span", {class: "warn"}, `failed: ${t.error}`),
        badges(t)))));
    const details = el("details", {class: "turns"}, el("summary", {}, "turns: slates, ratings, choices, verdicts"));
    // built on first open: 20 sessions x their slates would otherwise be built on every page turn
    details.addEventListener("toggle", () => {
      if (details.open && details.childElementCount === 1) details.append(...s.turns.map(t => turnDetail(s, t)));
    });
    card.append(details);
    return card;
  }

  // ---- filtering, paging, the grid
  function matches(s) {
    for (const f of FILTERS) if (state[f] !== "" && String(s[f]) !== state[f]) return false;
    if (state.flagged && !(s.contradictions || s.failed)) return false;
    if (state.text) {
      const q = state.text.toLowerCase();
      if (!s.turns.some(t => (t.utterance || "").toLowerCase().includes(q))) return false;
    }
    return true;
  }

  function render() {
    const hits = sessions.filter(matches);
    const pages = Math.max(1, Math.ceil(hits.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const shown = hits.slice(state.page * PAGE, (state.page + 1) * PAGE);
    $("sessions").replaceChildren(...(shown.length ? shown.map(sessionCard)
      : [el("p", {class: "meta"}, "No session matches these filters.")]));
    $("page-info").textContent = ` page ${state.page + 1} of ${pages} · ${hits.length} of ${sessions.length} sessions `;
    $("prev").disabled = state.page === 0;
    $("next").disabled = state.page >= pages - 1;
    for (const f of FILTERS) $("f-" + f).value = state[f];
    $("f-text").value = state.text;
    $("f-flagged").checked = state.flagged;
    for (const b of document.querySelectorAll("button.pick")) {
      b.classList.toggle("active", b.dataset.persona === state.persona_id && b.dataset.variant === state.variant
        && b.dataset.run === state.run);
    }
    const browser = $("browser");
    browser.dataset.matches = hits.length;
    browser.dataset.shown = shown.length;
    const params = new URLSearchParams(Object.entries(state).filter(([k, v]) => v !== "" && v !== false && k !== "page"));
    if (params.toString() || location.hash.startsWith("#transcripts")) {  // never move a reader who came for another section
      history.replaceState(null, "", "#transcripts" + (params.toString() ? "?" + params : ""));
    }
  }

  function setFilters(values) {
    Object.assign(state, {variant: "", user_variant: "", persona_id: "", run: "", text: "", flagged: false}, values,
      {page: 0});
    render();
  }

  function buildGrid() {
    const variants = distinct("variant"), runs = distinct("run");
    const count = {};
    for (const s of sessions) {
      const k = `${s.persona_id}|${s.variant}|${s.run}`;
      count[k] = (count[k] || 0) + 1;
    }
    const head = el("tr", {}, el("th", {class: "l"}, "persona \\ recommender, run"),
      variants.flatMap(v => runs.map(r => el("th", {}, `${v} · run ${r}`))));
    const rows = distinct("persona_id").map(p => el("tr", {}, el("th", {class: "l"}, personaName(p)),
      variants.flatMap(v => runs.map(r => el("td", {}, count[`${p}|${v}|${r}`] ? el("button", {
        type: "button", class: "pick", "data-persona": p, "data-variant": v, "data-run": r,
        title: `what ${personaName(p)}'s users said to ${v} in run ${r}`}, count[`${p}|${v}|${r}`]) : "–")))));
    $("picks").replaceChildren(head, ...rows);
  }

  function applyHash() {
    const [where, query] = location.hash.slice(1).split("?");
    if (where !== "transcripts" || !query) return false;
    const p = new URLSearchParams(query);
    const values = {};
    for (const f of [...FILTERS, "text"]) if (p.has(f)) values[f] = p.get(f);
    values.flagged = p.get("flagged") === "true";
    setFilters(values);
    return true;
  }

  function init() {
    for (const f of FILTERS) {
      const sel = $("f-" + f);
      sel.append(el("option", {value: ""}, "all"), ...distinct(f).map(v =>
        el("option", {value: v}, f === "persona_id" ? personaName(v) : v)));
      sel.addEventListener("change", () => { state[f] = sel.value; state.page = 0; render(); });
    }
    $("f-text").addEventListener("input", e => { state.text = e.target.value; state.page = 0; render(); });
    $("f-flagged").addEventListener("change", e => { state.flagged = e.target.checked; state.page = 0; render(); });
    $("f-clear").addEventListener("click", () => setFilters({}));
    $("prev").addEventListener("click", () => { state.page -= 1; render(); });
    $("next").addEventListener("click", () => { state.page += 1; render(); });
    buildGrid();
    $("picks").addEventListener("click", e => {
      const b = e.target.closest("button.pick");
      if (b) setFilters({persona_id: b.dataset.persona, variant: b.dataset.variant, run: b.dataset.run});
    });
    window.addEventListener("hashchange", () => { if (applyHash()) $("transcripts").scrollIntoView(); });
    if (!applyHash()) render();
    $("browser").dataset.readyMs = Math.round(performance.now());  // read by benchmarks/report_render.py
  }

  init();
})();
