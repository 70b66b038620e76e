"""Muon: momentum orthogonalised by Newton-Schulz for the hidden matrices, AdamW for the rest.

For a weight matrix W (m x n) with gradient G_t, Muon keeps a momentum buffer and steps along its
nearest semi-orthogonal matrix (every singular value set to about 1):

    B_t = mu B_{t-1} + G_t                                  momentum
    M_t = G_t + mu B_t  (Nesterov)   or   B_t               the direction to orthogonalise
    O_t = NS(M_t) ~ U V^T   where M_t = U S V^T            orthogonalisation (Newton-Schulz)
    W  <- W (1 - lr wd) - lr sqrt(max(1, m / n)) O_t        decoupled decay, shape-scaled step

The update has the same size in every direction of the matrix's input space, so rare directions
learn as fast as common ones; a step's size is set by ``lr`` alone, not by the gradient's scale.

NS is the quintic Newton-Schulz iteration on X_0 = M / ||M||_F (so every singular value <= 1)

    X_{k+1} = a X_k + b (X_k X_k^T) X_k + c (X_k X_k^T)^2 X_k

which maps each singular value s through p(s) = a s + b s^3 + c s^5, leaving U and V alone. The
default coefficients (3.4445, -4.7750, 2.0315) push every s in (0, 1] into roughly [0.7, 1.2] in
five steps (fast, not exact, which Muon tolerates); (1.5, -0.5, 0) is the classical cubic
iteration, which converges to U V^T exactly. X X^T is formed on the shorter side (transpose a tall
matrix first), so the cost is O(min(m, n)^2 max(m, n)) per step. Convolution kernels
(out, in, kh, kw) are treated as the matrix (out, in kh kw).

Muon is meant for the hidden matrices only. Embeddings, the output layer, biases and norm gains go
to the AdamW groups of the same optimiser (Loshchilov & Hutter 2019):

    m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
    theta <- theta (1 - lr wd) - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)

One optimiser holds both kinds of group (``use_muon`` True or False), so a learning-rate schedule,
``state_dict`` and resume treat it as any other. Reference: K. Jordan et al. 2024, "Muon: an
optimizer for hidden layers in neural networks".
"""

from __future__ import annotations

import math

import torch

from archlab.train.eager import EagerMethods

DEFAULT_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(G: torch.Tensor, steps: int = 5, coefficients=DEFAULT_NS_COEFFICIENTS,
                  eps: float = 1e-7) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with G's singular vectors: ~U V^T for G = U S V^T.

    ``G`` is (..., m, n): a stack of matrices is orthogonalised matrix by matrix in one batched
    call, in G's dtype.
    """
    a, b, c = coefficients
    shape = G.shape
    X = G.reshape(-1, *shape[-2:])                            # (k, m, n)
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + eps)        # every singular value now <= 1
    tall = shape[-2] > shape[-1]
    if tall:
        X = X.mT  # (k, n, m): X X^T is then the smaller (n, n) Gram matrix
    for _ in range(steps):
        A = X @ X.mT                                          # X X^T, (k, r, r), r = min(m, n)
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)           # b (X X^T) + c (X X^T)^2
        X = torch.baddbmm(X, B, X, beta=a)                    # a X + B X
    return (X.mT if tall else X).reshape(shape)


def muon_scale(shape: torch.Size) -> float:
    """sqrt(max(1, m / n)) for an (m, n) matrix: a tall matrix's orthogonal update has smaller entries."""
    m, n = shape[0], math.prod(shape[1:])
    return max(1.0, m / n) ** 0.5


class Muon(EagerMethods, torch.optim.Optimizer):
    """Muon for groups with ``use_muon=True``, AdamW for the others (see the module docstring).

    Group keys: ``lr``, ``weight_decay``; Muon groups ``momentum``, ``nesterov``, ``ns_steps``,
    ``ns_dtype`` (the name of the dtype Newton-Schulz runs in: "bfloat16" by default, as Muon's
    authors run it -- the iteration only needs the singular values near 1, and it is twice as
    fast; None = the parameter's dtype); AdamW groups ``betas``, ``eps``. Use
    ``muon_param_groups`` to split a model's parameters.
    """

    def __init__(self, param_groups, *, lr: float = 0.02, momentum: float = 0.95, nesterov: bool = True,
                 ns_steps: int = 5, ns_dtype: str | None = "bfloat16",
                 betas: tuple[float, float] = (0.9, 0.95), eps: float = 1e-8, weight_decay: float = 0.0):
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if ns_steps < 1:
            raise ValueError(f"ns_steps must be >= 1, got {ns_steps}")
        if ns_dtype is not None and not isinstance(getattr(torch, ns_dtype, None), torch.dtype):
            raise ValueError(f"ns_dtype must name a torch dtype (e.g. 'bfloat16') or be None, got {ns_dtype!r}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, ns_dtype=ns_dtype,
                        betas=betas, eps=eps, weight_decay=weight_decay, use_muon=True)
        super().__init__(param_groups, defaults)
        for group in self.param_groups:
            if group["use_muon"]:
                bad = [tuple(p.shape) for p in group["params"] if p.dim() < 2]
                if bad:
                    raise ValueError(f"Muon groups take matrices (2+ dims), got parameters of shape {bad}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._muon_step if group["use_muon"] else self._adamw_step)(group, params)
        return loss

    def _muon_step(self, group, params) -> None:
        lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
        # Matrices of one shape are orthogonalised together in one batched Newton-Schulz call.
        by_shape: dict[torch.Size, list[torch.Tensor]] = {}
        for p in params:
            by_shape.setdefault(p.shape, []).append(p)
        for shape, same in by_shape.items():
            grads = [p.grad for p in same]
            bufs = []
            for p in same:
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                bufs.append(state["momentum_buffer"])
            torch._foreach_mul_(bufs, mu)
            torch._foreach_add_(bufs, grads)                                   # B = mu B + G
            direction = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs  # G + mu B
            M = torch.stack(direction).flatten(2)                              # (k, m, n): kernels as matrices
            ns_dtype = getattr(torch, group["ns_dtype"]) if group["ns_dtype"] else M.dtype
            O = newton_schulz(M.to(ns_dtype), group["ns_steps"]).to(same[0].dtype)  # (k, m, n)
            if wd:
                torch._foreach_mul_(same, 1.0 - lr * wd)
            torch._foreach_add_(same, list(O.view(len(same), *shape).unbind(0)), alpha=-lr * muon_scale(shape))

    def _adamw_step(self, group, params) -> None:
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        beta1, beta2 = group["betas"]
        grads, ms, vs = [], [], []
        for p in params:
            state = self.state[p]
            if "exp_avg" not in state:
                state["step"] = 0
                state["exp_avg"] = torch.zeros_like(p)
                state["exp_avg_sq"] = torch.zeros_like(p)
            state["step"] += 1
            grads.append(p.grad)
            ms.append(state["exp_avg"])
            vs.append(state["exp_avg_sq"])
        steps = [self.state[p]["step"] for p in params]
        torch._foreach_lerp_(ms, grads, 1.0 - beta1)                           # m = b1 m + (1 - b1) g
        torch._foreach_mul_(vs, beta2)
        torch._foreach_addcmul_(vs, grads, grads, value=1.0 - beta2)           # v = b2 v + (1 - b2) g^2
        denom = torch._foreach_sqrt(vs)
        torch._foreach_div_(denom, [math.sqrt(1.0 - beta2 ** t) for t in steps])
        torch._foreach_add_(denom, eps)                                        # sqrt(v_hat) + eps
        if wd:
            torch._foreach_mul_(params, 1.0 - lr * wd)
        torch._foreach_addcdiv_(params, ms, denom, [-lr / (1.0 - beta1 ** t) for t in steps])  # - lr m_hat / (..)


def muon_param_groups(model: torch.nn.Module, *, muon_lr: float, adamw_lr: float, weight_decay: float,
                      momentum: float, betas: tuple[float, float], ns_steps: int = 5) -> list[dict]:
    """Split ``model``'s trainable parameters: hidden matrices to Muon, everything else to AdamW.

    Hidden matrices are the 2+ dim weights except embedding tables (any module with "Embedding"
    in its class name) and the output layer (the last 2+ dim weight the model registers, e.g.
    GPT's ``lm_head`` or a classifier's ``fc``): those are lookups and readouts, not maps between
    hidden spaces, and keep AdamW. AdamW decays matrices only, never biases or norm gains.
    """
    embedding_params = {id(p) for m in model.modules() if "Embedding" in type(m).__name__
                        for p in m.parameters(recurse=False)}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    matrices = [p for _, p in named if p.dim() >= 2]
    output = id(matrices[-1]) if matrices else None
    muon, adam_decay, adam_no_decay = [], [], []
    for _, p in named:
        if p.dim() >= 2 and id(p) not in embedding_params and id(p) != output:
            muon.append(p)
        elif p.dim() >= 2:
            adam_decay.append(p)
        else:
            adam_no_decay.append(p)
    groups = [dict(params=muon, use_muon=True, lr=muon_lr, weight_decay=weight_decay, momentum=momentum,
                   ns_steps=ns_steps),
              dict(params=adam_decay, use_muon=False, lr=adamw_lr, weight_decay=weight_decay, betas=betas),
              dict(params=adam_no_decay, use_muon=False, lr=adamw_lr, weight_decay=0.0, betas=betas)]
    return [g for g in groups if g["params"]]
