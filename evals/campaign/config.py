"""The campaign config: one pydantic model, built once from YAML, errors name the field."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_serializer,
                      model_validator)

from simulator.choice import DECISION_HELP, DecisionMode, refuse_temperature
from simulator.rating_rules import RATING_RULES
from simulator.variants import USER_VARIANTS
from evals.campaign.events import variant_now
from evals.campaign.inputs import SMALL_FILE_BYTES, InputError, first_error, read_text
from evals.campaign.jobs import ExecutorName
from personas.infra.old_keys import renamed

from recsys.pipeline import RERANKERS  # "mixture": mixture calibration, models with attention only


class ConfigError(ValueError):
    """A campaign config that cannot run; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMSettings(_Strict):
    backend: str = Field("embedded", description="embedded | openai | transformers")
    model: str | None = Field(None, description="model name (openai) or path (embedded, transformers)")
    base_url: str | None = Field(None, description="OpenAI-compatible server, e.g. a vLLM endpoint")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable that holds the key")
    json_mode: Literal["json_schema", "json_object", "prompt"] = "json_schema"
    concurrency: int = Field(4, ge=1, description="LLM calls in flight")
    n_threads: int | None = Field(None, ge=1, description="embedded only: llama.cpp threads")
    cache: bool = Field(True, description="on-disk response cache under OUT/llm_cache")
    adapter: str | None = Field(None, description="a tuned simulator (`personasim train consistency --out DIR`): DIR, "
                                "or a PEFT LoRA folder (transformers) / GGUF LoRA file (embedded)")

    @model_serializer(mode="wrap")
    def _no_unset_adapter(self, handler):
        data = handler(self)
        if data.get("adapter") is None:  # configs without an adapter keep the config hash they had
            data.pop("adapter", None)
        return data

    def backend_options(self) -> dict:
        """The backend's constructor keywords, as its registry entry reads these settings."""
        from simulator.llm import BACKENDS, LLMConfigError

        try:
            return BACKENDS[self.backend].options(self)
        except ValueError as exc:
            raise LLMConfigError(str(exc)) from None

    def adapter_weights(self) -> Path | None:
        """The file holding the adapter's weights (GGUF LoRA for embedded, PEFT safetensors for transformers),
        whose content a campaign is pinned to; None without an adapter."""
        if self.adapter is None:
            return None
        if self.backend == "embedded":
            return Path(self.backend_options()["lora_path"])
        from simulator.llm.backends.hf_weights import adapter_folder

        return adapter_folder(self.adapter) / "adapter_model.safetensors"

    def check(self) -> None:
        """LLMConfigError unless the backend exists and has what it needs (model file, model name, API key),
        found without sending a request; a missing packaged model is AssetMissingError. The embedded model
        is loaded and run once in a child process (`llama_build.probe`): a llama.cpp crash is this error."""
        from simulator.llm import BACKENDS, LLMConfigError, create_backend

        if self.backend not in BACKENDS:
            raise LLMConfigError(f"unknown LLM backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")
        if self.backend == "embedded":
            from simulator.llm.backends.llama_build import DEFAULT_THREADS, probe

            if self.model is None:
                from personas.infra.assets import smollm2_gguf

                model = smollm2_gguf()
            elif not Path(self.model).is_file():
                raise LLMConfigError(f"model file {self.model} does not exist; pass a .gguf path")
            else:
                model = self.model
            probe(str(model), self.n_threads or DEFAULT_THREADS)  # llama.cpp runs here, or one line says why not
        elif self.backend == "openai":
            create_backend(self.backend, **self.backend_options())  # checks the model name and the key; sends nothing
        if self.adapter is not None and self.backend == "openai":
            raise LLMConfigError("llm.adapter: an OpenAI-compatible server loads its own adapters; drop 'adapter'")
        if self.adapter is not None and self.backend == "embedded" and not Path(self.backend_options()["lora_path"]).is_file():
            raise LLMConfigError(f"llm.adapter {self.adapter}: no GGUF LoRA adapter there (train with --gguf)")


class PersonaSource(_Strict):
    path: str | None = Field(None, description="an existing personas.jsonl")
    extract: str | None = Field(None, description="a document source to extract from: 'dataset-users' (a document "
                                "per user of recsys.dataset, rendered from their train-part interactions; "
                                "evals/campaign/dataset.py), 'ml-100k-users' (MovieLens-100k's, rendered as before), "
                                "'clothing-reviews', or a file or folder of documents")
    k: int = Field(4, ge=2, description="personas to extract")
    split: Literal["global", "per-user"] = Field(
        "global", description="ml-100k-users: how the held-out ratings are chosen: 'global' (leave-future-out: "
        "one cut time, the latest `holdout` share of all ratings after it; recsys.time_splits.global_split) or 'per-user' "
        "(each user's latest `holdout` share; train then holds other users' later ratings)")
    holdout: float | None = Field(0.2, gt=0, lt=1, description="ml-100k-users, dataset-users: render each user's "
                                  "document from their earlier ratings only, holding out this latest share (the split "
                                  "that grounded users are calibrated on); None uses every rating (never for an "
                                  "evaluation)")
    max_personas: int | None = Field(None, ge=1, description="use only the first N personas")

    @model_serializer(mode="wrap")
    def _per_user_split_as_before(self, handler):
        data = handler(self)
        if data.get("split") == "per-user":  # the split every config had before 'split' existed: the same hash
            data.pop("split")
        return data

    @model_validator(mode="after")
    def _one_source(self):
        if (self.path is None) == (self.extract is None):
            raise ValueError("give exactly one of 'path' or 'extract'")
        return self


class GroundingSettings(_Strict):
    """Grounded users (user variant 'grounded'): calibration and how they decide."""

    @model_validator(mode="before")
    @classmethod
    def _no_temperature(cls, data):
        return refuse_temperature(data)

    calibration_users: int = Field(100, ge=10, description="training users whose later training ratings are fitted")
    decision: DecisionMode = Field("sampled", description=DECISION_HELP)
    rating_rule: str = Field("expected", description="how the expected rating becomes 1-5, by name "
                             "(`simulator.rating_rules.RATING_RULES`): 'expected' rounds it (least error, piles up at "
                             "3-4), 'matched' bins it so the ratings' histogram is the training one")
    llm_feature: bool = Field(True, description="the LLM's yes-probability is a feature of the decision")
    twins: bool = Field(True, description="each grounded user twins a real member of its persona (else persona-level)")
    layers: list[Literal["subtopic", "context"]] = Field(
        ["subtopic", "context"], description="the layers a grounded user's decision plays: its subtopic's focus shift "
        "and its context's shifts (`simulator.choice`); [] plays the bare twin. The layers vary the population and "
        "cost fidelity to the person (docs/results/fidelity.md: -0.041 AUC on uniform negatives); the campaign's "
        "fidelity check measures the users with these layers")
    voice: Literal["planned", "free"] = Field("planned", description="how the LLM says a decision: 'planned' says the "
                                              "decision and one reason from the evidence as a short plan, in plain "
                                              "text; 'free' writes its own sentence under a JSON grammar "
                                              "(`simulator.voice`)")
    fidelity_users: int = Field(300, ge=0, description="held-out users on whom the campaign measures its grounded "
                                "users' fidelity before the sessions (OUT/fidelity.json: `personasim validate fidelity`'s "
                                "protocol on the campaign's own personas and calibration; 0 = skip, as does a `fidelity:` "
                                "result). Seconds without the LLM feature; with it, one LLM read per persona and item "
                                "these users are shown")
    fidelity_ab_users: int = Field(30, ge=0, description="of those, twins that meet random, popularity, MF and AMP-CF "
                                   "(A/B fidelity; 0 = skip)")

    @field_validator("rating_rule")
    @classmethod
    def _known_rule(cls, name: str) -> str:
        return RATING_RULES.check(name)

    @field_validator("fidelity_users")
    @classmethod
    def _enough_for_a_ci(cls, n: int) -> int:
        if 0 < n < 5:
            raise ValueError(f"{n} users cannot give a bootstrap CI; use 0 (skip) or at least 5")
        return n


#: What a data set's verb may be: one or two lower-case words ('buy', 'listen to'); the campaign's
#: `DatasetFolder.verb` and `personasim calibrate --verb` check it.
VERB_PATTERN = r"^[a-z]+( [a-z]+)?$"


class DatasetFolder(_Strict):
    """A data set in RecBole's atomic-file format (`recsys.atomic`): a folder holding NAME.inter (user_id, item_id;
    rating or label; timestamp) and optionally NAME.item (title, genres or categories, year) and NAME.user
    (demographics). What a campaign needs of it and what it switches off without a column: `evals.campaign.dataset`."""

    path: str = Field(description="the folder (relative to the working folder, as personas.path is)")
    name: str | None = Field(None, description="NAME, when the folder holds several .inter files and none is named "
                             "after the folder")
    verb: str = Field("choose", pattern=VERB_PATTERN, description="what a simulated user does with a chosen "
                      "item, in its prompts ('buy', 'read', 'listen to'); MovieLens-100k's is 'watch'")

    @model_serializer(mode="wrap")
    def _default_verb_unsaid(self, handler):
        data = handler(self)
        if data.get("verb") == "choose":  # a folder that names no verb keeps the config hash it had
            data.pop("verb", None)
        return data


class ServiceSettings(_Strict):
    """How a campaign talks to one recommender service (`recsys.service.ServiceRecommender`, docs/service.md)."""

    timeout_s: float = Field(60.0, gt=0, description="seconds for each connect, write and read of a request")
    retries: int = Field(4, ge=0, le=20, description="retries of a transient failure (timeouts, 429, 5xx)")
    depth: int = Field(100, ge=1, le=10_000, description="ranked items asked per user: more than a session shows "
                       "plus a slate")
    auth_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="an environment variable "
                                 "holding a bearer token; its value is read at run time, never written anywhere")


class RecsysSettings(_Strict):
    dataset: Literal["ml-100k"] | DatasetFolder = Field(
        "ml-100k", description="the interactions the recommenders train on and the personas come from: 'ml-100k' (the "
        "packaged MovieLens-100k) or {path: DIR} (a folder of RecBole atomic files)")
    dim: int = Field(64, ge=2)
    mixture_k: int = Field(4, ge=1, description="AMP-CF's mixture components (user vectors) per user (old name: "
                           "personas_k, still read)")
    epochs: int = Field(6, ge=1, description="training epochs (full-softmax loss; 6 is tuned for ML-100k)")
    rerank_lambda: float = Field(0.5, ge=0.0, le=1.0, description="relevance weight for MMR / calibration")
    candidates: int = Field(100, ge=10, description="top-N handed to a reranker")
    onboarding_pool: int = Field(12, ge=3, description="popular items a user picks liked ones from")
    services: dict[str, ServiceSettings] = Field(default_factory=dict, description="options of the services named "
                                                 "in variants, by URL: {'http://HOST:PORT': {timeout_s, retries, "
                                                 "depth, auth_env}}")

    @model_serializer(mode="wrap")
    def _no_unset_services(self, handler):
        data = handler(self)
        if not data.get("services"):  # configs without services keep the config hash they had
            data.pop("services", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _old_mixture_key(cls, data):
        # 'personas_k' was this key's name before "persona" came to mean only a card from documents
        return renamed(data, "personas_k", "mixture_k")

    def verb(self) -> str:
        """What the simulated users do with a chosen item, in their prompts: 'watch' for MovieLens-100k, the
        folder's ``verb`` otherwise."""
        return "watch" if self.dataset == "ml-100k" else self.dataset.verb

    @field_validator("dataset", mode="before")
    @classmethod
    def _dataset_spelling(cls, value):
        if isinstance(value, str) and value != "ml-100k":
            raise ValueError(f"{value!r}: give 'ml-100k' or {{path: DIR}} (a folder of RecBole atomic files)")
        return value


#: A sane bound on simulated users per persona (an ML-100k persona of k = 4 has about 200 members).
MAX_USERS_PER_PERSONA = 500


class CampaignConfig(_Strict):
    """Everything a campaign needs. Its hash stamps every event it writes."""

    name: str = "campaign"
    seed: int = 0
    personas: PersonaSource
    user_variants: list[str] = Field(default_factory=lambda: ["layered"], min_length=1,
                                     description="simulated-user variants by name (`simulator.variants.USER_VARIANTS`)")
    users_per_persona: int | dict[str, int] = Field(
        2, description="simulated users per persona: one number for every user variant, or one per user variant "
        "({grounded: 4, naive: 2}; each of user_variants named once)")
    best_of: int = Field(1, ge=1, le=16, description="candidate turns per step; the most consistent is kept")
    variants: list[str] = Field(min_length=1, description="recommender variants: MODEL[+RERANKER]; MODEL a built-in "
                                "(recsys.registry.BUILTINS), an installed plug-in, 'package.module:factory' or "
                                "'http://HOST:PORT' (recsys/README.md, 'Bring your own recommender')")
    turns: int = Field(3, ge=1, le=50)
    slate_size: int = Field(5, ge=2, le=20)
    reshow_from: int | None = Field(1, ge=1, description="from this turn on, one item the user rated earlier is shown "
                                    "again (lets line-to-line consistency fire); None: never")
    runs_per_user: int = Field(2, ge=1, le=20, description="repeats with different seeds (drift, A/A)")
    llm: LLMSettings = Field(default_factory=LLMSettings)
    recsys: RecsysSettings = Field(default_factory=RecsysSettings)
    grounding: GroundingSettings = Field(default_factory=GroundingSettings)
    fidelity: str | None = Field(None, description="a fidelity.json from `personasim validate fidelity` to show in "
                                 "the report (default: OUT/fidelity.json when present)")
    executor: ExecutorName = "local"
    ray_address: str | None = Field(None, description="Ray cluster address; None starts a local Ray")
    ray_retries: int = Field(3, ge=0, description="reruns of a session whose Ray worker or node died; one more "
                             "loss stops the campaign (the turns written stay; rerun with --resume)")
    sessions_in_flight: int = Field(8, ge=1, description="sessions run concurrently (local executor)")

    @field_validator("user_variants")
    @classmethod
    def _known_user_variants(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"user_variants repeat: {names}")
        return [USER_VARIANTS.check(n) for n in names]

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, variants: list[str]) -> list[str]:
        from recsys.models import RecsysError
        from recsys.registry import resolve

        read = []
        for v in variants:
            model, _, reranker = variant_now(v).partition("+")  # an old reranker name reads as today's
            try:
                entry = resolve(model)  # a plug-in module is imported here: a broken one fails before any work
            except RecsysError as exc:
                raise ValueError(f"variant {v!r}: {exc}") from None
            if reranker and reranker not in RERANKERS:
                raise ValueError(f"variant {v!r}: unknown reranker {reranker!r}; use MODEL[+RERANKER] with RERANKER "
                                 f"in {RERANKERS}")
            if reranker == "mixture" and not entry.attention:
                raise ValueError(f"variant {v!r}: the 'mixture' reranker needs a model with attention over mixture "
                                 "components (ampcf, ampcf-mf)")
            read.append(variant_now(v))
        if len(set(read)) != len(read):
            raise ValueError("variants repeat")
        return read

    @field_validator("recsys")
    @classmethod
    def _mf_start_needs_components(cls, rc: RecsysSettings, info: ValidationInfo) -> RecsysSettings:
        from_mf = [v for v in info.data.get("variants") or [] if v.partition("+")[0] == "ampcf-mf"]
        if from_mf and rc.mixture_k < 2:
            raise ValueError(f"variant {from_mf[0]!r} needs mixture_k >= 2 (with one component it is MF), "
                             f"got {rc.mixture_k}")
        return rc

    @field_validator("recsys")
    @classmethod
    def _services_named_in_variants(cls, rc: RecsysSettings, info: ValidationInfo) -> RecsysSettings:
        models = {v.partition("+")[0] for v in info.data.get("variants") or []}
        for url in rc.services:
            if url not in models:
                raise ValueError(f"services: {url!r} is no model of variants {sorted(models)}; name the service "
                                 "URL exactly as a variant does")
        return rc

    @field_validator("users_per_persona")
    @classmethod
    def _users_per_variant(cls, n: int | dict[str, int], info: ValidationInfo) -> int | dict[str, int]:
        if any(c < 1 or c > MAX_USERS_PER_PERSONA for c in (n.values() if isinstance(n, dict) else [n])):
            raise ValueError(f"every count must be between 1 and {MAX_USERS_PER_PERSONA}, got {n}")
        named = info.data.get("user_variants")  # absent when user_variants itself is invalid
        if isinstance(n, dict) and named is not None and sorted(n) != sorted(named):
            raise ValueError(f"names {sorted(n)}; name each of user_variants {named} once, or give one number for all")
        return n

    def users_for(self, user_variant: str) -> int:
        """Simulated users per persona of ``user_variant``."""
        n = self.users_per_persona
        return n[user_variant] if isinstance(n, dict) else n

    def config_hash(self) -> str:
        """12 hex chars over the canonical JSON of everything that shapes results: the settings (not how
        sessions are executed) and the prompt templates the LLM is asked with. Other code is not hashed:
        a calibration of another version is refused by its own check (`evals.campaign.driver`)."""
        from simulator.prompts import templates_digest

        settings = self.model_dump(mode="json", exclude={"executor", "ray_address", "ray_retries", "sessions_in_flight"})
        blob = json.dumps({**settings, "prompt_templates": templates_digest()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def load_config(path: str | Path) -> CampaignConfig:
    """Read and validate a YAML config; raise ConfigError naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(read_text(path, "campaign config", SMALL_FILE_BYTES))
    except InputError as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level")
    try:
        return CampaignConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {first_error(exc)}") from None
