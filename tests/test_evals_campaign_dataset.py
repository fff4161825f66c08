"""A campaign on a data set that is not MovieLens-100k (`recsys.dataset: {path: DIR}`, evals/campaign/dataset.py).

The Instacart sample is written as RecBole atomic files by the example script (an implicit log: every purchase
rated 5, timestamps the purchase rank), and `personasim campaign run` runs on it end to end against the local
OpenAI-compatible fault server (tests/servers/fault_openai.py: fast, deterministic answers): personas of its own
users, MF trained and scored (plain and with MMR over its categories), grounded users calibrated on what its users
went on to buy and measured for fidelity on their held-out purchases, grounded, layered and naive users' sessions,
the report. Grounded users asked of ratings on another scale are refused in one line before any folder is claimed,
what the data cannot serve is refused before any work, and the default ML-100k config keeps its hash.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from evals.campaign.config import CampaignConfig

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evals.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.fixture(scope="module")
def instacart(tmp_path_factory) -> Path:
    """The packaged Instacart sample as an atomic folder, written by examples/atomic/write_instacart.py."""
    path = ROOT / "examples" / "atomic" / "write_instacart.py"
    spec = importlib.util.spec_from_file_location("write_instacart", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path_factory.mktemp("instacart")
    module.main(["--out", str(out)])
    return out


def _config(folder: Path, **over) -> dict:
    return {"name": "instacart-campaign", "seed": 3,
            "personas": {"extract": "dataset-users", "k": 2, "split": "per-user"},
            "user_variants": ["layered", "naive"], "users_per_persona": 1, "variants": ["mf", "mf+mmr"],
            "turns": 2, "slate_size": 4, "runs_per_user": 2,
            "recsys": {"dataset": {"path": str(folder)}, "dim": 16, "mixture_k": 2, "epochs": 2,
                       "onboarding_pool": 6},
            "sessions_in_flight": 4, **over}


def _write(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


PLUGIN = "examples.plugins.genre_pop:make_ranker"


def test_a_campaign_runs_end_to_end_on_the_instacart_atomic_folder(instacart, tmp_path):
    """The README's example (examples/byo/campaign.yaml: a plug-in against MF on an atomic folder), with a
    smaller design and the local test LLM server."""
    from tests.servers.process import free_port, serve

    example = yaml.safe_load((ROOT / "examples" / "byo" / "campaign.yaml").read_text())
    folder = {**example["recsys"]["dataset"], "path": str(instacart)}
    assert example["variants"] == ["mf", PLUGIN] and folder == {"path": str(instacart), "verb": "buy"}
    CampaignConfig.model_validate({**example, "recsys": {"dataset": folder}})  # it validates as is
    port = free_port()
    with serve(["-m", "tests.servers.fault_openai", "--port", str(port), "--delay", "0.05", "--answer-schema"],
               port) as url:
        cfg = {**example, **_config(instacart, variants=example["variants"], user_variants=example["user_variants"],
                                    llm={"backend": "openai", "base_url": url, "model": "fault-echo", "concurrency": 4})}
        cfg["recsys"]["dataset"] = folder
        cfg["grounding"] = {**example["grounding"], "calibration_users": 60, "fidelity_users": 60,
                            "fidelity_ab_users": 20}
        out = tmp_path / "run"
        res = _cli("campaign", "run", str(_write(cfg, tmp_path / "c.yaml")), "--out", str(out), "--quiet",
                   timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]

    # personas of Instacart's own users, from the documents of their purchases (not the held-out ones)
    cards = [json.loads(line) for line in (out / "personas" / "personas.jsonl").read_text().splitlines()]
    assert len(cards) == 2 and all(c["source"] == "instacart-users[train]" for c in cards)
    assert all(c["likes"][0].startswith("category_") for c in cards)  # its categories stand in for genres
    split = json.loads((out / "personas" / "split.json").read_text())  # each user's latest 20% of purchases held out
    assert split["split"] == "instacart:time-holdout-0.2" and split["kind"] == "per-user" and split["n_heldout"] > 5000
    members = {json.loads(line)["doc_id"] for line in (out / "personas" / "assignments.jsonl").read_text().splitlines()}
    assert len(members) == 586

    # grounded users calibrated on the train part's later purchases: the affinity and take level, nothing of a rating
    cal = json.loads((out / "personas" / "calibration.json").read_text())
    assert cal["implicit"] and cal["split"] == split["split"] and cal["llm"] is None and cal["verb"] == "buy"
    for kind in ("twin", "persona"):
        assert cal["models"][kind]["implicit"] and cal["models"][kind]["take_level"] is not None
        assert set(cal["report"][kind]["not_fitted"]) == {"rating", "like_given_watched", "person_spread"}
    assert cal["report"]["twin"]["cv_auc"] > 0.6  # the evidence tells a later purchase from a product never bought
    # their fidelity on held-out purchases: taste alignment and A/B, and what was not measured, named
    fid = json.loads((out / "fidelity.json").read_text())
    assert fid["split"] == split["split"] and fid["n_users"] == 60 and fid["rating_error"] == []
    assert set(fid["not_measured"]) == {"rating_error", "rating_distribution", "like_given_watched",
                                        "population_realism"}
    assert "rmse below user-mean" not in fid["headline"]["targets"]
    takes = fid["population_realism"]["takes"]  # how much users take: the implicit log's population check
    assert takes["n_users"] == 60 and takes["k"] == 15 and takes["real_sd_hits"]["value"] > 0
    assert cal["report"]["twin"]["take_spread"]["n_users"] == 60  # calibration_users
    assert "population: take spread: the twins' sd of hits within the real one's CI" in fid["headline"]["targets"]
    assert fid["headline"]["twin_auc_1to1_matched"] > 0.5 and fid["ab_fidelity"]["pairs"]
    # its purchases carry an order's position for a time, so a user's log is one sitting: the layers' spread is
    # not measured, said so, and no target is read from it
    assert "no sitting" in fid["layers_spread"]["not_measured"]
    assert not any(k.startswith("layers:") for k in fid["headline"]["targets"])

    # the recommenders trained and scored on its leave-last-out split, with its categories as genres
    offline = json.loads((out / "models" / "offline.json").read_text())["rows"]
    assert [r["variant"] for r in offline] == ["mf", PLUGIN] and all(r["ndcg@10"] > 0 for r in offline)
    assert all(r["calibration_kl@10"] == r["calibration_kl@10"] for r in offline)  # not NaN: it has categories

    # sessions of both user variants, on Instacart's products
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert len(events) == 2 * 3 * 2 * 2 * 2  # variants x user variants x personas x runs x turns
    assert {e["user_variant"] for e in events} == {"grounded", "layered", "naive"} and all(e["ok"] for e in events)
    grounded = [e for e in events if e["user_variant"] == "grounded"]
    assert all(e["ratings"][i] == 5 for e in grounded for i in e["chosen"])  # a take is kept, rated as the log does
    assert all(set(e["ratings"].values()) <= {3, 5} for e in grounded)
    assert any(e["chosen"] for e in grounded) and not all(e["chosen"] for e in grounded)
    ids = {line.split("\t")[0] for line in (instacart / "instacart.item").read_text().splitlines()[1:]}
    assert {s["id"] for e in events for s in e["slate"]} <= ids

    # a grounded user's mean rating is 3 + 2 x its acceptance here: left out of its A/B (and its Holm family), kept for
    # the LLM users, whose ratings are their own
    tables = {t["user_variant"]: [r["metric"] for r in t["rows"]] for t in json.loads((out / "ab.json").read_text())["tables"]}
    assert "mean_rating" not in tables["grounded"] and "acceptance_rate" in tables["grounded"]
    assert "mean_rating" in tables["layered"]
    from evals.report.summary import by_variant_table, load_events

    rows = by_variant_table(load_events(out)[0], implicit=True)
    assert all((r["mean_rating"] is None) == (r["user_variant"] == "grounded") for r in rows)

    # what the data lack is switched off and named, in dataset.json and in the report
    record = json.loads((out / "dataset.json").read_text())
    assert record["name"] == "instacart" and not record["explicit_ratings"] and record["genres"]
    assert any("no explicit ratings" in line for line in record["switched_off"])
    report = (out / "report.html").read_text()
    assert "offline, instacart (" in report
    assert "data set instacart: no explicit ratings (an implicit log)" in report
    assert "data set instacart: no user demographics" in report
    assert "Not fitted, on this implicit log: rating (" in report and "Not measured, on this implicit log:" in report
    assert "how much they\ntake as real users do" in report and "the 15 items most taken in train" in report
    # real users' drift reads ratings: said to be unmeasurable here, not a command to run that would fail
    assert json.loads((out / "real_drift.json").read_text())["unavailable"].startswith("not measurable on an implicit")
    assert "not measurable on an implicit log" in report
    res = subprocess.run([sys.executable, "-m", "benchmarks.real_drift", str(out)], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert res.returncode == 2 and res.stderr.strip().startswith("error: instacart: not measurable on an implicit log")

    # the folder is pinned: a changed data set is refused on --resume
    inputs = json.loads((out / "campaign.json").read_text())["inputs"]
    assert {"dataset instacart.inter", "dataset instacart.item", "dataset instacart.user"} <= set(inputs)


def test_grounded_users_on_ratings_of_another_scale_are_refused_in_one_line_before_the_folder_is_claimed(
        instacart, tmp_path):
    """Neither explicit 1-5 ratings nor an implicit log (a 1-10 scale): nothing a grounded user can be calibrated on."""
    folder = tmp_path / "ten"
    folder.mkdir()
    lines = (instacart / "instacart.inter").read_text().splitlines()
    fields = lines[0].split("\t")
    at = fields.index("rating:float")
    rows = [line.split("\t") for line in lines[1:]]
    for n, row in enumerate(rows):
        row[at] = str(n % 10 + 1)
    (folder / "ten.inter").write_text("\n".join(["\t".join(fields)] + ["\t".join(r) for r in rows]) + "\n")
    cfg = _config(folder, user_variants=["grounded", "naive"])
    out = tmp_path / "run"
    res = _cli("campaign", "run", str(_write(cfg, tmp_path / "c.yaml")), "--out", str(out), "--quiet", timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (
        f"error: field 'user_variants': 'grounded' users are calibrated on ratings or interactions over time, and "
        f"'rating' in {folder / 'ten.inter'} runs from 1 to 10: neither explicit ratings on the 1-5 scale simulated "
        f"users rate on nor an implicit log (every interaction 5, or labels); use user_variants [layered, naive]")
    assert not out.exists()


def test_personasim_calibrate_fits_an_atomic_folders_personas_and_refuses_another_data_set(instacart, tmp_path):
    """`personasim calibrate --dataset DIR` on personas of that folder's own users (split.json beside them); the same
    personas with the default data set (MovieLens-100k) are refused in one line, nothing written."""
    from evals.validity.grounding import extract_dataset_personas
    from recsys.atomic import load_atomic

    ppath = extract_dataset_personas(load_atomic(instacart), tmp_path / "personas", kind="per-user", holdout=0.2, k=2,
                                     seed=0, show_progress=False)
    res = _cli("calibrate", "--personas", str(ppath), "--no-llm", "--users", "20", "--quiet", timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "split.json: of split instacart:time-holdout-0.2, but this data set gives ml-100k" in res.stderr
    assert not (ppath.parent / "calibration.json").exists()
    res = _cli("calibrate", "--personas", str(ppath), "--dataset", str(instacart), "--verb", "Buy!", "--no-llm",
               timeout=300)
    assert res.returncode == 2 and res.stderr.strip() == ("error: --verb 'Buy!': one or two lower-case words, e.g. "
                                                         "'buy' or 'listen to'")
    assert not (ppath.parent / "calibration.json").exists()
    res = _cli("calibrate", "--personas", str(ppath), "--dataset", str(instacart), "--verb", "buy", "--no-llm",
               "--users", "20", "--quiet", timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    record = json.loads((ppath.parent / "calibration.json").read_text())
    assert record["implicit"] and record["n_users"] == 20 and record["split"] == "instacart:time-holdout-0.2"
    assert record["verb"] == "buy"
    assert record["models"]["twin"]["take_spread"] == record["report"]["twin"]["take_spread"]["take_spread"]


def test_what_the_data_cannot_serve_is_refused_before_any_work(instacart, tmp_path):
    """Sizes and columns, checked by `check_dataset` (no model trained, nothing written)."""
    from evals.campaign.dataset import DatasetError, check_dataset

    def refused(**over) -> str:
        with pytest.raises(DatasetError) as info:
            check_dataset(CampaignConfig.model_validate(_config(instacart, **over)))
        return str(info.value)

    assert refused(personas={"extract": "dataset-users", "k": 600}).startswith(
        "field 'personas.k': 600 personas from 586 users with a document in instacart")
    assert refused(personas={"extract": "ml-100k-users"}).startswith(
        "field 'personas.extract': 'ml-100k-users' are MovieLens-100k's users")
    big = {**_config(instacart)["recsys"], "onboarding_pool": 1600}
    assert refused(turns=50, slate_size=20, recsys=big).startswith(
        "field 'recsys.dataset': instacart has 2555 items, and a session shows up to 2600")
    no_genres = tmp_path / "no-genres"  # the same log without its .item file: a catalog without categories
    no_genres.mkdir()
    for ext in ("inter", "user"):
        (no_genres / f"instacart.{ext}").write_text((instacart / f"instacart.{ext}").read_text())
    cfg = _config(no_genres, variants=["mf", "mf+calibration"])
    with pytest.raises(DatasetError, match=r"'mf\+calibration' needs item genres, and instacart has no genre field"):
        check_dataset(CampaignConfig.model_validate(cfg))
    cfg = _config(no_genres, variants=["mf", "mf+mmr"])  # MMR falls back to MF's item embeddings
    assert "no item genres or categories" in check_dataset(CampaignConfig.model_validate(cfg)).switched_off()[0]
    no_time = tmp_path / "no-time"
    no_time.mkdir()
    rows = [line.split("\t")[:3] for line in (instacart / "instacart.inter").read_text().splitlines()]
    (no_time / "instacart.inter").write_text("".join("\t".join(r) + "\n" for r in rows))
    with pytest.raises(DatasetError, match="has no 'timestamp' on every interaction; the recommenders are trained"):
        check_dataset(CampaignConfig.model_validate(_config(no_time)))


def test_the_default_dataset_keeps_the_config_hash_a_folder_changes_it():
    """`recsys.dataset` defaults to 'ml-100k' and dumps as that string, as before the field took a folder, so a
    config that does not name it, or names 'ml-100k', hashes as it always did."""
    base = {"personas": {"path": "p.jsonl"}, "variants": ["mf", "ampcf"]}
    plain = CampaignConfig.model_validate(base)
    named = CampaignConfig.model_validate({**base, "recsys": {"dataset": "ml-100k"}})
    assert plain.model_dump(mode="json")["recsys"] == {"dataset": "ml-100k", "dim": 64, "mixture_k": 4, "epochs": 6,
                                                       "rerank_lambda": 0.5, "candidates": 100, "onboarding_pool": 12}
    assert plain.config_hash() == named.config_hash()
    a = CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": "data/a"}}})
    b = CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": "data/b"}}})
    assert len({plain.config_hash(), a.config_hash(), b.config_hash()}) == 3
    assert CampaignConfig.model_validate_json(a.model_dump_json()).config_hash() == a.config_hash()  # a Ray worker's
    with pytest.raises(ValueError, match="'data/a': give 'ml-100k' or {path: DIR}"):
        CampaignConfig.model_validate({**base, "recsys": {"dataset": "data/a"}})


def test_dataset_users_documents_render_any_log_and_leave_out_what_is_held_out(instacart, tmp_path):
    """`interaction_users` on a toy explicit log (the text in ml-100k-users' layout, demographics from .user), and
    on the implicit Instacart log the grounded users' split's train part, which holds no user's offline test item
    either; without a split (`document_rows(ds, None, holdout)`), every interaction but those."""
    from evals.validity.grounding import dataset_documents, document_rows, document_split
    from recsys import leave_last_out
    from recsys.atomic import load_atomic
    from tests.test_recsys_atomic import toy

    ds = load_atomic(toy(tmp_path / "toy"))
    docs = {d.id: d for d in dataset_documents(ds, document_rows(ds, None, None)).documents}
    assert docs["u1"].text == ("Favourite genres: Drama. Loves: The First (1990; Drama, Comedy); Second (Drama). "
                               "Dislikes: Third  Film (2001). About: age 24; job nurse.")
    assert docs["u3"].text.endswith("About: age 51.") and docs["u1"].metadata["age group"] == "18-24"

    ds = load_atomic(instacart)
    split = document_split(ds, "per-user", 0.2)  # an implicit log: the grounded users' split
    rows = document_rows(ds, split, 0.2)
    assert rows is split.train and len(rows) + len(split.test) == len(ds.ratings)
    test = leave_last_out(ds)
    held = set(zip(test.test_users.tolist(), test.test_items.tolist()))
    assert not held & set(zip(rows["user"].tolist(), rows["item"].tolist()))
    without = document_rows(ds, None, 0.2)
    assert len(without) == len(ds.ratings) - len(held)
    assert not held & set(zip(without["user"].tolist(), without["item"].tolist()))
    corpus = dataset_documents(ds, rows)
    assert corpus.name == "instacart-users[train]" and len(corpus.documents) == ds.n_users
    assert all("Dislikes" not in d.text and "About" not in d.text for d in corpus.documents)


def test_the_data_sets_verb_reaches_every_users_prompt(instacart):
    """`recsys.dataset.verb` ('watch' for MovieLens-100k, 'choose' when a folder names none) is what each campaign
    user is built with, and what its turn prompt asks it to do; a folder that names no verb keeps its config hash."""
    from evals.campaign.world import user_settings
    from personas.card import PersonaCard
    from simulator.catalog import Item
    from simulator import sample_users
    from simulator.variants import make_user

    base = {**_config(instacart, variants=["mf"]), "user_variants": ["naive"]}
    movies = CampaignConfig.model_validate({**base, "recsys": {"dataset": "ml-100k"}})
    plain = CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": str(instacart)}}})
    said = CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": str(instacart), "verb": "choose"}}})
    buy = CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": str(instacart), "verb": "buy"}}})
    assert (movies.recsys.verb(), plain.recsys.verb(), buy.recsys.verb()) == ("watch", "choose", "buy")
    assert plain.config_hash() == said.config_hash() != buy.config_hash()
    assert user_settings(buy, "grounded") == {"verb": "buy", "voice": buy.grounding.voice}
    slate = [Item(id="1", title="product 1", facets={"genres": ["category 01"]})]
    card = PersonaCard(id="p0", name="p", summary="a shopper", likes=["category 01"])
    for variant in ("naive", "layered"):
        user = make_user(variant, None, **user_settings(buy, variant))
        user.reset(sample_users([card], 1, 0)[0].model_copy(update={"variant": variant}))
        prompt = user.turn_messages(slate, 0)[1]["content"]
        assert "to buy (" in prompt and "watch" not in prompt
    with pytest.raises(ValueError, match="verb"):
        CampaignConfig.model_validate({**base, "recsys": {"dataset": {"path": str(instacart), "verb": "Buy!"}}})
