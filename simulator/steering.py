"""Activation capping: keep a role-playing model off its default-assistant direction.

A model's hidden states put its default "helpful assistant" voice and the characters
it plays in a low-dimensional space with one dominant axis. Here that axis is measured
directly, at one decoder layer, from the personas themselves:

    axis = mean hidden state (default-assistant prompts) - mean hidden state (persona prompts)

Both prompt sets ask the same questions (`QUESTIONS`); only the system prompt differs (a
plain assistant, or "you are <persona>"), and the states averaged are those of the shared
question and answer-prompt tokens, so the difference is what the role changes in how the
same words are read. The axis is stored as a unit vector with the mean projections of
both sets on it.

`install_cap` adds a forward hook on that layer that caps each position's projection on
the axis: ``h <- h - max(0, h.u - c) u``, so the states cannot drift further toward the
default assistant than ``c``. The cap is a fraction ``cap`` between the persona mean (0)
and the default mean (1): ``c = role + cap * (default - role)``; ``cap=1`` leaves typical
default states untouched, ``cap=0`` pins every position at most at the persona mean.
Transformers backend only (llama.cpp has no hook for it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from personas.card import PersonaCard
from personas.infra.files import write_whole

#: Questions asked under both system prompts; generic so that no persona is favoured.
QUESTIONS = (
    "Tell me a little about yourself.",
    "What kind of film would you pick for tonight, and why?",
    "Here are three films: a comedy, a horror film and a documentary. Which one do you choose?",
    "What do you dislike in a movie?",
)
DEFAULT_SYSTEM = "You are a helpful AI assistant."


def role_system(card: PersonaCard) -> str:
    """The system prompt that puts the model in ``card``'s role (first person, tastes stated)."""
    likes = ", ".join(card.likes) or "nothing in particular"
    dislikes = ", ".join(card.dislikes) or "nothing in particular"
    return (f"You are {card.name}, not an AI assistant. {card.summary} You like {likes}; you dislike {dislikes}. "
            "Stay in character and answer in the first person.")


@dataclass
class PersonaAxis:
    """The dominant persona axis of one layer.

    vector: (hidden_size,) unit vector from the persona mean toward the default-assistant mean.
    layer: index of the decoder layer whose output it lives in (0-based).
    default_proj / role_proj: mean projections (hidden-state units) of the two prompt sets.
    fingerprint: the base model's `base_fingerprint` (an axis is for one model).
    personas: ids of the personas it was computed from.
    """

    vector: np.ndarray
    layer: int
    default_proj: float
    role_proj: float
    fingerprint: dict
    personas: list[str]

    def threshold(self, cap: float) -> float:
        """The projection value that ``cap`` (0 = persona mean, 1 = default mean) stands for."""
        return self.role_proj + cap * (self.default_proj - self.role_proj)

    def check_model(self, lm, where: str | Path = "axis") -> None:
        from simulator.llm.backends.hf_weights import fingerprint_mismatch
        from simulator.llm.errors import LLMConfigError

        mismatch = fingerprint_mismatch(self.fingerprint, lm)
        if mismatch:
            raise LLMConfigError(f"{where}: persona axis computed on another model ({mismatch})")


def _layers(lm):
    inner = getattr(lm, "model", lm)
    layers = getattr(inner, "layers", None)
    if layers is None:
        raise ValueError(f"{type(lm).__name__} has no .model.layers: activation capping supports decoder-only "
                         "models of the Llama family")
    return layers


def question_states(lm, tok, system: str, layer: int, questions=QUESTIONS) -> np.ndarray:
    """(n_questions, hidden_size) mean output of decoder ``layer`` over each question's tokens and
    the answer prompt, with ``system`` as the system prompt."""
    import torch

    seen = []

    def record(module, args, output):  # registered last, so it sees a cap hook's result
        seen.append((output[0] if isinstance(output, tuple) else output)[0].detach())

    # not output_hidden_states: transformers records those before other forward hooks run
    handle = _layers(lm)[layer].register_forward_hook(record)
    out = []
    try:
        for q in questions:
            head = [{"role": "system", "content": system}]
            n_head = len(tok.apply_chat_template(head, tokenize=True, return_dict=True)["input_ids"])
            ids = tok.apply_chat_template([*head, {"role": "user", "content": q}], add_generation_prompt=True,
                                          return_tensors="pt", return_dict=True)
            seen.clear()
            with torch.no_grad():
                lm(**ids)
            out.append(seen[-1][n_head:].double().mean(0).numpy())  # (hidden,)
    finally:
        handle.remove()
    return np.stack(out)


def persona_axis(lm, tok, cards: list[PersonaCard], layer: int | None = None, questions=QUESTIONS) -> PersonaAxis:
    """The axis from ``cards`` (at least one) at ``layer`` (default: the middle layer)."""
    from simulator.llm.backends.hf_weights import base_fingerprint

    if not cards:
        raise ValueError("a persona axis needs at least one persona")
    n_layers = len(_layers(lm))
    layer = n_layers // 2 if layer is None else layer
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} is out of range: the model has {n_layers} decoder layers")
    default = question_states(lm, tok, DEFAULT_SYSTEM, layer, questions).mean(0)
    roles = np.stack([question_states(lm, tok, role_system(c), layer, questions) for c in cards]).reshape(-1, default.shape[0])
    diff = default - roles.mean(0)
    norm = float(np.linalg.norm(diff))
    if norm == 0.0:
        raise ValueError("default and persona states coincide: no axis")
    u = diff / norm
    return PersonaAxis(vector=u.astype(np.float32), layer=layer, default_proj=float(default @ u),
                       role_proj=float(roles.mean(0) @ u), fingerprint=base_fingerprint(lm),
                       personas=[c.id for c in cards])


def projections(lm, tok, system: str, axis: PersonaAxis, questions=QUESTIONS) -> np.ndarray:
    """(n_questions,) projections on ``axis`` of the question states under ``system`` (hooks included)."""
    return question_states(lm, tok, system, axis.layer, questions) @ axis.vector.astype(np.float64)


class CapHook:
    """The forward hook (`install_cap`); ``remove()`` takes it off. ``calls`` counts forward passes."""

    def __init__(self, axis: PersonaAxis, threshold: float):
        import torch

        self.u = torch.tensor(axis.vector, dtype=torch.float32)
        self.threshold = threshold
        self.calls = 0
        self._handle = None

    def __call__(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        u = self.u.to(hidden.dtype)
        excess = (hidden @ u - self.threshold).clamp(min=0.0)  # (batch, seq)
        capped = hidden - excess.unsqueeze(-1) * u
        self.calls += 1
        return (capped, *output[1:]) if isinstance(output, tuple) else capped

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None


def install_cap(lm, axis: PersonaAxis, cap: float) -> CapHook:
    """Cap the projection on ``axis`` at ``axis.threshold(cap)`` in every forward pass of ``lm``."""
    hook = CapHook(axis, axis.threshold(cap))
    hook._handle = _layers(lm)[axis.layer].register_forward_hook(hook)
    return hook


def save_axis(axis: PersonaAxis, path: str | Path) -> Path:
    """Write ``axis`` as JSON (vector as a list; small: hidden_size floats)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"kind": "personasim-persona-axis", "version": 1, "layer": axis.layer, "default_proj": axis.default_proj,
            "role_proj": axis.role_proj, "fingerprint": axis.fingerprint, "personas": axis.personas,
            "vector": [float(x) for x in axis.vector]}
    return write_whole(path, json.dumps(data))


def load_axis(path: str | Path) -> PersonaAxis:
    """Read an axis written by `save_axis`; ValueError naming the file and field otherwise."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not a persona-axis JSON file ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "personasim-persona-axis":
        raise ValueError(f"{path}: not a persona-axis file (field 'kind' is not 'personasim-persona-axis')")
    for key in ("layer", "default_proj", "role_proj", "fingerprint", "vector"):
        if key not in data:
            raise ValueError(f"{path}: field {key!r} is missing")
    return PersonaAxis(vector=np.asarray(data["vector"], dtype=np.float32), layer=int(data["layer"]),
                       default_proj=float(data["default_proj"]), role_proj=float(data["role_proj"]),
                       fingerprint=dict(data["fingerprint"]), personas=list(data.get("personas", [])))
