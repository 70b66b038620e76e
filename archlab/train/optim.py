"""Optimisers and learning-rate schedules.

AdamW (Loshchilov & Hutter 2019) decays weights decoupled from the gradient step,
``theta <- theta - lr * (m_hat / (sqrt(v_hat) + eps) + wd * theta)``; decay applies only to tensors
with 2+ dims (matrices, embeddings, kernels), never to biases or normalisation gains.
SGD with momentum: ``v <- mu v + g``; ``theta <- theta - lr v`` (Nesterov: ``- lr (g + mu v)``).
Muon (``archlab.train.muon``): Newton-Schulz-orthogonalised Nesterov momentum for the hidden
matrices at ``muon_lr``; AdamW at ``lr`` for embeddings, the output layer, biases and gains.

Schedules are multipliers of the base learning rate, as a function of the optimiser step s:

    warmup   s < W:  (s + 1) / W
    cosine         : r + (1 - r) * (1 + cos(pi * (s - W) / (S - W))) / 2     r = min_lr_ratio
    step           : gamma ** ((s - W) // step_size)
    constant       : 1
"""

from __future__ import annotations

import math

import torch

from archlab.train.config import TrainConfig
from archlab.train.eager import SGD, AdamW
from archlab.train.muon import Muon, muon_param_groups


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "muon":
        groups = muon_param_groups(model, muon_lr=cfg.muon_lr, adamw_lr=cfg.lr, weight_decay=cfg.weight_decay,
                                   momentum=cfg.muon_momentum, betas=cfg.betas, ns_steps=cfg.ns_steps)
        return Muon(groups)
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_multiplier(step: int, cfg: TrainConfig, total_steps: int) -> float:
    """The factor applied to ``cfg.lr`` at optimiser step ``step`` (0-based)."""
    W = cfg.warmup_steps
    if step < W:
        return (step + 1) / W
    if cfg.schedule == "cosine":
        span = max(1, total_steps - W)
        progress = min(1.0, (step - W) / span)
        r = cfg.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.gamma ** ((step - W) // cfg.step_size)
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_steps: int):
    # A plain function (not a callable object): LambdaLR then keeps nothing of it in its
    # state_dict, which stays loadable with torch.load(weights_only=True).
    def multiplier(step: int) -> float:
        return lr_multiplier(step, cfg, total_steps)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)
