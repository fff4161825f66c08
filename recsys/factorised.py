"""MF and AMP-CF: one factorised net behind the `recsys.models.Recommender` contract.

Shapes: B users, M items, N = catalog size, K mixture components, d = embedding dim.

- `MF`: one vector per user, BPR loss (Rendle et al. 2009).
- `AMPCF`: K user vectors (mixture components) per user mixed by attention to the *candidate*
  item: a_k = softmax_k(<W p_k, V q_j> / (tau sqrt(d_att))), x = sum_k a_k p_k,
  score = <x, q_j> + b_j. Optional regularisers: per-item attention entropy
  (push each item to one component) and across-item entropy of the mean
  attention (keep all components in use). With K = 1 it is MF.

MF and AMP-CF train with the same loop (`_Factorised.fit`: softmax over the full
catalog by default, BPR optional), so differences come from the user
model, not the optimiser. Training is bit-for-bit reproducible for a seed
(`recsys.train_context.deterministic`).

Fold-in (a new user from liked items, item side frozen): `fold_in` for one user,
`fold_in_batch` for several at once with bit-identical results (a campaign folds
every session waiting on a model in one call); both can warm-start from given
parameters.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from recsys.models import Recommender, RecsysError, TrainConfig
from recsys.train_context import deterministic, keep_freed_memory


class _Net(nn.Module):
    """Item side shared by MF and AMP-CF; the user side is K mixture components, user vectors (K=1: MF)."""

    def __init__(self, n_users, n_items, dim, k, tau, generator, att_dim=None):
        super().__init__()
        self.k, self.tau, self.dim = k, tau, dim
        # W, V [d_att, d] project components and items into a small attention space:
        # the attention logits cost B*K*M*d_att, so d_att < d keeps K components cheap.
        self.att_dim = min(att_dim or dim, dim)
        # independent component inits (a shared start + noise was tried: NDCG@10 0.070 vs 0.075, K=4)
        self.users = nn.Parameter(torch.randn(n_users, k, dim, generator=generator) * 0.1)
        self.items = nn.Parameter(torch.randn(n_items, dim, generator=generator) * 0.1)
        self.bias = nn.Parameter(torch.zeros(n_items))
        if k > 1:
            a = self.att_dim
            self.W = nn.Parameter(torch.eye(a, dim) + 0.01 * torch.randn(a, dim, generator=generator))
            self.V = nn.Parameter(torch.eye(a, dim) + 0.01 * torch.randn(a, dim, generator=generator))

    def attention(self, P: torch.Tensor, Q: torch.Tensor) -> torch.Tensor:
        """P [B, K, d], Q [M, d] (shared) or [B, M, d] -> attention [B, K, M] (softmax over K)."""
        if self.k == 1:
            return torch.ones(P.shape[0], 1, Q.shape[-2], dtype=P.dtype)
        keys = P @ self.W.T  # [B, K, d_att]
        queries = Q @ self.V.T
        logits = keys @ (queries.T if queries.dim() == 2 else queries.transpose(1, 2))  # [B, K, M]
        return torch.softmax(logits / (self.tau * self.att_dim ** 0.5), dim=1)

    def scores(self, P: torch.Tensor, Q: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores [B, M] and attention [B, K, M]; Q is [M, d] (shared) or [B, M, d].

        Laid out [B, K, M] so both products are plain batched matmuls.
        """
        per = P @ (Q.T if Q.dim() == 2 else Q.transpose(1, 2))  # [B, K, M]
        if self.k == 1:
            return per[:, 0] + b, torch.ones_like(per)
        a = self.attention(P, Q)
        return (a * per).sum(1) + b, a


class _Factorised(Recommender):
    """MF and AMP-CF: a `_Net` trained with BPR."""

    k = 1
    tau = 1.0
    att_dim: int | None = None

    def __init__(self, config: TrainConfig | None = None, *, peak_reg: float = 0.0, spread_reg: float = 0.0, **overrides):
        self.config = TrainConfig(**{**asdict(config or TrainConfig()), **overrides})
        self.peak_reg, self.spread_reg = peak_reg, spread_reg

    def fit(self, train, show_progress=False, on_epoch=None, start: "_Factorised | None" = None,
            start_noise: float = 0.1):
        """Train on CSR positives [n_users, n_items]; ``on_epoch(epoch, self)`` runs after each epoch
        (e.g. to track validation NDCG; the net is in train mode and no_grad is up to the callee).

        ``start``: a trained MF on the same matrix to start from (`_start_from_mf`)."""
        self._remember(train)
        if self.k > max(1, int(np.diff(self._train.indptr).max())):
            raise RecsysError(f"K={self.k} mixture components but no user has more than "
                              f"{int(np.diff(self._train.indptr).max())} positives")
        c = self.config
        gen = torch.Generator().manual_seed(c.seed)
        self.net = _Net(self.n_users, self.n_items, c.dim, self.k, self.tau, gen, self.att_dim)
        if start is not None:
            self._start_from_mf(start, gen, start_noise)
        coo = self._train.tocoo()
        users_np, items_np = coo.row.astype(np.int64), coo.col.astype(np.int64)
        rng = np.random.default_rng(c.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=c.lr)
        t0 = time.perf_counter()
        self.epoch_s: list[float] = []
        with deterministic(), keep_freed_memory():
            self._epochs(c, users_np, items_np, rng, opt, show_progress, on_epoch)
        self.train_s = time.perf_counter() - t0
        self.net.eval()
        return self

    def _start_from_mf(self, mf: "_Factorised", gen: torch.Generator, noise: float) -> None:
        """Start from a trained MF (NeuMF-style pre-training): items and biases are MF's, and each of the
        K mixture components is the user's MF vector plus seeded Gaussian noise of ``noise`` times the vectors'
        sd (identical components get identical gradients, so without noise they never split). At the first
        step the mixture scores almost as MF does; training then decides how far the components move apart."""
        if getattr(mf, "k", None) != 1 or not hasattr(mf, "net"):
            raise RecsysError(f"starting from MF needs a trained MF, got {type(mf).__name__}")
        if mf.net.users.shape[0] != self.n_users or mf.net.items.shape != self.net.items.shape:
            raise RecsysError(f"the MF to start from has {mf.net.users.shape[0]} users x {tuple(mf.net.items.shape)} "
                              f"items x dims; this model has {self.n_users} users x {tuple(self.net.items.shape)}")
        with torch.no_grad():
            u = mf.net.users.detach()  # [U, 1, d]
            jitter = torch.randn(self.net.users.shape, generator=gen) * (noise * float(u.std()))
            self.net.users.copy_(u.expand(-1, self.k, -1) + jitter)
            self.net.items.copy_(mf.net.items.detach())
            self.net.bias.copy_(mf.net.bias.detach())

    def _epochs(self, c, users_np, items_np, rng, opt, show_progress, on_epoch) -> None:
        for _ in tqdm(range(c.epochs), desc=f"train {self.name}", disable=not show_progress):
            e0 = time.perf_counter()
            order = rng.permutation(len(users_np))
            for start in range(0, len(order), c.batch_size):
                idx = order[start: start + c.batch_size]
                u = torch.from_numpy(users_np[idx])
                pos = torch.from_numpy(items_np[idx])
                neg = torch.from_numpy(rng.integers(0, self.n_items, size=(len(idx), c.negatives)))
                loss = self._loss(u, pos, neg)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.epoch_s.append(time.perf_counter() - e0)
            if on_epoch is not None:
                on_epoch(len(self.epoch_s), self)

    def _loss(self, u, pos, neg, P=None):
        net = self.net
        P = net.users[u] if P is None else P.expand(len(pos), -1, -1)
        if self.config.loss == "softmax":
            s, a = net.scores(P, net.items, net.bias)  # [B, N]
            loss = torch.nn.functional.cross_entropy(s, pos)
            loss = loss + self.config.reg * (P.pow(2).sum(-1).mean() + net.items[pos].pow(2).sum(-1).mean())
            return loss + self._attention_reg(a)
        cand = torch.cat([pos[:, None], neg], dim=1)  # [B, 1 + n_neg]
        Q = net.items[cand]
        s, a = net.scores(P, Q, net.bias[cand])
        loss = -torch.nn.functional.logsigmoid(s[:, :1] - s[:, 1:]).mean()
        loss = loss + self.config.reg * (P.pow(2).sum(-1).mean() + Q.pow(2).sum(-1).mean())
        return loss + self._attention_reg(a)

    def _attention_reg(self, a: torch.Tensor) -> torch.Tensor | float:
        """a [B, K, M]: penalise per-item entropy (peaked), reward entropy of the mean (spread)."""
        if self.k == 1 or not (self.peak_reg or self.spread_reg):
            return 0.0
        ent = -(a * a.clamp_min(1e-9).log()).sum(1).mean()
        mean_a = a.mean(dim=2)  # [B, K]
        spread = -(mean_a * mean_a.clamp_min(1e-9).log()).sum(-1).mean()
        return self.peak_reg * ent - self.spread_reg * spread

    @torch.no_grad()
    def score_all(self, users):
        users = self._check_users(users)
        net = self.net
        out = []
        for start in range(0, len(users), 256):  # batched over users, never a loop over items
            P = net.users[torch.from_numpy(users[start: start + 256].copy())]
            s, _ = net.scores(P, net.items, net.bias)
            out.append(s.numpy())
        return np.concatenate(out) if out else np.zeros((0, self.n_items), np.float32)

    @torch.no_grad()
    def attention_all(self, users: np.ndarray) -> np.ndarray:
        """Attention over each user's mixture components for every catalog item: [B, N, K] (K = 1: all ones)."""
        users = self._check_users(users)
        net = self.net
        out = [net.attention(net.users[torch.from_numpy(users[s: s + 256].copy())], net.items).transpose(1, 2).numpy()
               for s in range(0, len(users), 256)]
        return np.concatenate(out) if out else np.zeros((0, self.n_items, self.k), np.float32)

    @torch.no_grad()
    def explain(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Attention over each user's mixture components for items: [B, M, K] (argmax = dominant component)."""
        users = self._check_users(users)
        items = np.asarray(items, dtype=np.int64)
        self._check_items(items)
        P = self.net.users[torch.from_numpy(users)]
        Q = self.net.items[torch.from_numpy(items)]
        return self.net.attention(P, Q).transpose(1, 2).numpy()

    def dominant_component(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Index of the mixture component with the most attention for each (user, item): [B, M] ints."""
        return self.explain(users, items).argmax(-1)

    def explain_params(self, params: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Attention [M, K] for folded-in user parameters [K, d]."""
        items = np.asarray(items, np.int64)
        self._check_items(items)
        a = self._mix(np.asarray(params, np.float32), self._fold_consts())[2]
        return np.ones((len(items), 1), np.float32) if a is None else a[:, items].T

    def fold_in(self, liked, steps=60, seed=0, start=None):
        """Mixture components [K, d] for a new user who liked ``liked`` (item indices); items frozen.

        ``start`` [K, d]: begin from these parameters (a warm start, e.g. the user's previous fold)
        instead of the seeded start near the liked items; the result then differs from a cold fold.

        The objective is training's, for one user: softmax loss (mean -log softmax(s)[liked] + reg *
        mean_k |p_k|^2) or BPR, by Adam (lr 0.05). A softmax fold without attention regularisers (every
        campaign's) runs on the gradient written out in numpy (`_fold_softmax`): autograd on a [K, d]
        leaf spent most of its time dispatching ~40 small ops a step, and a campaign folds a user in
        before every slate. BPR and regularised attention keep autograd (`_fold_steps`)."""
        liked = self._fold_liked(liked)
        P0, rng = self._fold_start(liked, seed, start)
        if self.config.loss == "softmax" and not (self.k > 1 and (self.peak_reg or self.spread_reg)):
            return self._fold_softmax(P0.numpy(), liked, steps)
        P = P0.requires_grad_(True)
        opt = torch.optim.Adam([P], lr=0.05)
        # softmax: each liked item once; BPR: repeat them so each step sees enough sampled negatives
        pos = torch.from_numpy(liked if self.config.loss == "softmax" else np.resize(liked, max(len(liked), 32)))
        net = self.net
        frozen = [q for q in net.parameters() if q.requires_grad]
        for q in frozen:  # item side frozen: no gradients computed or accumulated for it
            q.requires_grad_(False)
        try:
            with deterministic():
                self._fold_steps(P, opt, liked, pos, rng, steps)
        finally:
            for q in frozen:
                q.requires_grad_(True)
        return P.detach().numpy()

    def _fold_liked(self, liked) -> np.ndarray:
        liked = np.unique(np.asarray(liked, dtype=np.int64))
        if liked.size == 0:
            raise RecsysError("fold-in needs at least one liked item")
        self._check_items(liked)
        return liked

    def _fold_start(self, liked: np.ndarray, seed: int, start=None) -> tuple[torch.Tensor, np.random.Generator]:
        """The starting component vectors [K, d] (a fresh tensor) and the fold's generator (BPR negatives)."""
        gen = torch.Generator().manual_seed(seed)
        rng = np.random.default_rng(seed)
        Qliked = self.net.items.detach()[torch.from_numpy(liked)]
        # start each component at a different liked item so they can specialise
        pick = torch.from_numpy(rng.choice(len(liked), size=self.k, replace=len(liked) < self.k))
        if start is not None:  # warm: the draws above still happen, so the generator is where a cold fold's is
            return torch.tensor(np.asarray(start, np.float32).reshape(self.k, self.config.dim)), rng
        return (Qliked[pick] + 0.01 * torch.randn(self.k, self.config.dim, generator=gen)).clone(), rng

    def fold_in_batch(self, likes, seeds, steps=60, starts=None) -> list[np.ndarray]:
        """Fold-ins of B users: likes [B] arrays of item indices, seeds [B] ints, optional starts [B]
        (each [K, d] or None: see `fold_in`) -> B arrays [K, d].

        Each result equals ``fold_in(likes[u], steps, seeds[u], starts[u])`` bit for bit: users are
        solved one after another (stacking them would let BLAS sum in another order, last-bit
        differences a slate would amplify). The batch is the caller's saving: one hand-off to a
        worker for every session waiting on the model.
        """
        starts = list(starts) if starts is not None else [None] * len(likes)
        if not (len(likes) == len(seeds) == len(starts)):
            raise RecsysError(f"fold_in_batch: {len(likes)} likes, {len(seeds)} seeds, {len(starts)} starts")
        liked = [self._fold_liked(lk) for lk in likes]  # every user checked before any is solved
        return [self.fold_in(lk, steps, sd, st) for lk, sd, st in zip(liked, seeds, starts)]

    def _fold_consts(self) -> dict[str, np.ndarray]:
        """The frozen item side as numpy reads it (fold-in, `score_params`), laid out for contiguous
        products; rebuilt when the net or any of its tensors changed (torch counts in-place updates)."""
        net = self.net
        tensors = [net.items, net.bias, *([net.W, net.V] if self.k > 1 else [])]
        versions = [t._version for t in tensors]
        cached = getattr(self, "_consts_cache", None)
        if cached is not None and cached[0] is net and cached[1] == versions:
            return cached[2]
        items = net.items.detach().numpy().copy()
        consts = {"items": items, "items_t": np.ascontiguousarray(items.T), "bias": net.bias.detach().numpy().copy()}
        if self.k > 1:
            # attention logits = (P W^T)(Q V^T)^T / scale = P (Q V^T W)^T / scale
            qw = (net.items.detach() @ net.V.detach().T @ net.W.detach()).numpy()  # [N, d]
            consts.update(qw=qw, qw_t=np.ascontiguousarray(qw.T), scale=np.float32(self.tau * net.att_dim ** 0.5))
        self._consts_cache = (net, versions, consts)
        return consts

    def _mix(self, P: np.ndarray, c: dict[str, np.ndarray]):
        """Scores s [N] of component vectors P [K, d], with what the gradient needs: per-component scores
        per [K, N], attention a [K, N] (None when K = 1) and the mixture s - b [N]."""
        per = P @ c["items_t"]
        if self.k == 1:
            return per[0] + c["bias"], per, None, per[0]
        logits = (P @ c["qw_t"]) / c["scale"]
        logits -= logits.max(0)
        a = np.exp(logits)
        a /= a.sum(0)
        mixed = (a * per).sum(0)
        return mixed + c["bias"], per, a, mixed

    def _fold_grad(self, P: np.ndarray, target: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
        """Gradient [K, d] of the softmax fold loss at P [K, d]; ``target`` [N] is 1/|liked| on the likes.

        s_n = sum_k a_kn per_kn + b_n, per = P Q^T, a = softmax_k(P qw^T / scale); with
        g = softmax(s) - target: dL/dper = a g, dL/dlogits = a (per - s') g / scale, where s' = s - b.
        Checked against autograd in tests/test_recsys_models.py."""
        s, per, a, mixed = self._mix(P, c)
        e = np.exp(s - s.max())
        g = e / e.sum() - target
        if a is None:
            grad = (g @ c["items"])[None]
        else:
            ag = a * g
            grad = ag @ c["items"] + ((ag * (per - mixed)) / c["scale"]) @ c["qw"]
        return grad + np.float32(2 * self.config.reg / self.k) * P

    def _fold_softmax(self, P: np.ndarray, liked: np.ndarray, steps: int) -> np.ndarray:
        """``steps`` of Adam (torch's update, default betas, lr 0.05) on `_fold_grad`, in float32."""
        c = self._fold_consts()
        target = np.zeros(self.n_items, np.float32)
        target[liked] = 1.0 / len(liked)
        P = np.array(P, np.float32)
        m, v = np.zeros_like(P), np.zeros_like(P)
        lr, beta1, beta2, eps = 0.05, 0.9, 0.999, 1e-8
        for t in range(1, steps + 1):
            grad = self._fold_grad(P, target, c)
            m += (1 - beta1) * (grad - m)
            v = beta2 * v + (1 - beta2) * grad * grad
            denom = np.sqrt(v) / np.float32(np.sqrt(1 - beta2 ** t)) + np.float32(eps)
            P -= np.float32(lr / (1 - beta1 ** t)) * m / denom
        return P

    def _fold_steps(self, P, opt, liked, pos, rng, steps) -> None:
        """The autograd fold: BPR, or softmax with attention regularisers."""
        net = self.net
        for _ in range(steps):
            with torch.enable_grad():
                if self.config.loss == "softmax":
                    # one user: every positive shares the same catalog logits, so score once
                    s, a = net.scores(P[None], net.items, net.bias)
                    loss = -torch.log_softmax(s[0], dim=0)[torch.from_numpy(liked)].mean()
                    loss = loss + self.config.reg * P.pow(2).sum(-1).mean() + self._attention_reg(a)
                else:
                    neg = torch.from_numpy(rng.integers(0, self.n_items, size=(len(pos), self.config.negatives)))
                    loss = self._loss(None, pos, neg, P=P[None])
                opt.zero_grad()
                loss.backward()
                opt.step()

    def score_params(self, params):
        """Scores [N] of folded-in component vectors [K, d] (numpy: a campaign scores before every slate)."""
        return self._mix(np.asarray(params, np.float32), self._fold_consts())[0]

    def item_embeddings(self):
        return self.net.items.detach().numpy()

    def save(self, path) -> None:
        torch.save({"class": type(self).__name__, "config": asdict(self.config), "k": self.k, "tau": self.tau,
                    "peak_reg": self.peak_reg, "spread_reg": self.spread_reg, "att_dim": self.att_dim, "state": self.net.state_dict(),
                    "pretrain": asdict(self.pretrain) if getattr(self, "pretrain", None) else None,
                    "train": self._train, "train_s": self.train_s}, path)

    @classmethod
    def load(cls, path) -> "_Factorised":
        blob = torch.load(path, weights_only=False)
        model = MF(TrainConfig(**blob["config"])) if blob["class"] == "MF" else AMPCF(
            TrainConfig(**blob["config"]), k=blob["k"], tau=blob["tau"], peak_reg=blob["peak_reg"], spread_reg=blob["spread_reg"],
            att_dim=blob.get("att_dim"), pretrain=TrainConfig(**blob["pretrain"]) if blob.get("pretrain") else None)
        model._remember(blob["train"])
        model.net = _Net(model.n_users, model.n_items, model.config.dim, model.k, model.tau, torch.Generator(),
                         blob.get("att_dim"))
        model.net.load_state_dict(blob["state"])
        model.net.eval()
        model.train_s = blob["train_s"]
        return model


class MF(_Factorised):
    name = "mf"


class AMPCF(_Factorised):
    """Attentive multi-persona CF (the paper's name; its K "personas" are this project's mixture components).
    ``k`` mixture components per user, attention temperature ``tau``,
    attention space of ``att_dim`` dimensions (None: the embedding dim)."""

    name = "ampcf"

    def __init__(self, config: TrainConfig | None = None, *, k: int = 4, tau: float = 0.5, att_dim: int | None = 16,
                 pretrain: TrainConfig | None = None, pretrain_noise: float = 0.1, **kw):
        if k < 1:
            raise RecsysError(f"K must be >= 1, got {k}")
        if pretrain is not None and k == 1:
            raise RecsysError("K = 1 is MF: there is nothing to pre-train it with")
        super().__init__(config, **kw)
        self.k, self.tau, self.att_dim = k, tau, att_dim
        self.pretrain, self.pretrain_noise = pretrain, pretrain_noise
        self.name = f"ampcf-k{k}" + ("-mf" if pretrain is not None else "")

    def fit(self, train, show_progress=False, on_epoch=None, start=None, start_noise=None):
        """As `_Factorised.fit`; with ``pretrain`` set (the 'ampcf-kK-mf' variant) and no ``start`` given, an MF
        is first trained on ``pretrain`` (with this model's seed) and the components start from it. Its
        training time counts in ``train_s``."""
        t0 = time.perf_counter()
        if start is None and self.pretrain is not None:
            start = MF(replace(self.pretrain, seed=self.config.seed)).fit(train, show_progress)
        super().fit(train, show_progress, on_epoch, start=start,
                    start_noise=self.pretrain_noise if start_noise is None else start_noise)
        self.train_s = time.perf_counter() - t0
        return self
