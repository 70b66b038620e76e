"""Muon: the Newton-Schulz orthogonalisation, one step of the update rule, and its AdamW half."""

from __future__ import annotations

import shutil

import pytest
import torch

import archlab
from archlab.train.config import TrainConfig
from archlab.train.muon import Muon, muon_param_groups, muon_scale, newton_schulz
from archlab.train.optim import build_optimizer


def polar_factor(G: torch.Tensor) -> torch.Tensor:
    U, _, Vh = torch.linalg.svd(G, full_matrices=False)
    return U @ Vh


@pytest.mark.parametrize("shape", [(6, 10), (10, 6), (3, 5, 5)], ids=["wide", "tall", "stack"])
def test_cubic_newton_schulz_converges_to_the_polar_factor(shape):
    # X <- 1.5 X - 0.5 (X X^T) X maps each singular value s -> 1.5 s - 0.5 s^3, whose fixed point is 1.
    G = torch.randn(*shape, dtype=torch.float64)
    O = newton_schulz(G, steps=60, coefficients=(1.5, -0.5, 0.0))
    assert O.shape == G.shape
    torch.testing.assert_close(O, polar_factor(G), atol=1e-10, rtol=0)  # tolerance: 1e-10 absolute


def test_quintic_newton_schulz_keeps_singular_vectors_and_flattens_singular_values():
    # Singular values spread over two decades, 0.1 to 10.
    U, _ = torch.linalg.qr(torch.randn(32, 32, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(48, 48, dtype=torch.float64))
    s = torch.logspace(-1, 1, 32, dtype=torch.float64)
    G = U @ torch.diag(s) @ V[:, :32].T
    O = newton_schulz(G)  # the default five quintic steps
    inner = U.T @ O @ V[:, :32]  # diagonal when O has G's singular vectors
    off = inner - torch.diag(torch.diagonal(inner))
    assert off.abs().max() < 1e-8, off.abs().max()
    d = torch.diagonal(inner)
    # Five steps bring every one of them into [0.65, 1.2] (a 100x spread becomes < 2x).
    assert d.min() > 0.65 and d.max() < 1.2, d
    # A singular value far below the largest only grows by about a^5 = 3.4445^5 in five steps.
    tiny = newton_schulz(torch.diag(torch.tensor([1.0, 1e-6], dtype=torch.float64)))
    assert 0.6 < tiny[0, 0] < 1.2 and 1e-4 < tiny[1, 1] < 1e-3, tiny


def test_one_muon_step_follows_the_update_rule():
    torch.manual_seed(0)
    W = torch.nn.Parameter(torch.randn(8, 4, dtype=torch.float64))  # tall: scale sqrt(8 / 4)
    W0 = W.detach().clone()
    lr, wd, mu = 0.05, 0.1, 0.9
    opt = Muon([dict(params=[W])], lr=lr, weight_decay=wd, momentum=mu, nesterov=True, ns_dtype=None)
    G1 = torch.randn(8, 4, dtype=torch.float64)
    W.grad = G1.clone()
    opt.step()
    B1 = G1                                   # B_1 = mu * 0 + G_1
    expected = W0 * (1 - lr * wd) - lr * 2 ** 0.5 * newton_schulz(G1 + mu * B1)
    torch.testing.assert_close(W.detach(), expected, atol=1e-12, rtol=0)
    # Second step: the momentum buffer carries the first gradient.
    G2 = torch.randn(8, 4, dtype=torch.float64)
    W.grad = G2.clone()
    W1 = W.detach().clone()
    opt.step()
    B2 = mu * B1 + G2
    expected = W1 * (1 - lr * wd) - lr * 2 ** 0.5 * newton_schulz(G2 + mu * B2)
    torch.testing.assert_close(W.detach(), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(opt.state[W]["momentum_buffer"], B2, atol=1e-12, rtol=0)


def test_bfloat16_newton_schulz_steps_close_to_the_exact_one():
    # The default runs Newton-Schulz in bfloat16 (8 bits of mantissa): the step it takes is the
    # float64 step to within a few percent, entry by entry relative to the step's scale.
    torch.manual_seed(0)
    steps = {}
    for ns_dtype in ("bfloat16", None):
        W = torch.nn.Parameter(torch.zeros(64, 32, dtype=torch.float64))
        opt = Muon([dict(params=[W])], lr=1.0, momentum=0.0, ns_dtype=ns_dtype)
        W.grad = torch.randn(64, 32, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        opt.step()
        steps[ns_dtype] = -W.detach()
    assert steps["bfloat16"].dtype == torch.float64
    rel = (steps["bfloat16"] - steps[None]).norm() / steps[None].norm()
    assert rel < 0.03, rel


def test_convolution_kernels_are_orthogonalised_as_matrices():
    K = torch.nn.Parameter(torch.randn(4, 2, 3, 3, dtype=torch.float64))  # (out, in, kh, kw)
    K0 = K.detach().clone()
    opt = Muon([dict(params=[K])], lr=0.1, momentum=0.0, nesterov=False, ns_dtype=None)
    K.grad = torch.randn_like(K)
    opt.step()
    step = (K0 - K.detach()).reshape(4, 18) / 0.1   # (out, in kh kw); scale max(1, 4/18) = 1
    torch.testing.assert_close(step, newton_schulz(K.grad.reshape(4, 18)), atol=1e-12, rtol=0)
    assert muon_scale(K.shape) == 1.0 and muon_scale(torch.Size([18, 4])) == pytest.approx(4.5 ** 0.5)


def test_adamw_groups_match_torch_adamw():
    torch.manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(5, 3, dtype=torch.float64)),
            torch.nn.Parameter(torch.randn(3, dtype=torch.float64))]
    theirs = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    kw = dict(lr=0.01, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    a = Muon([dict(params=ours, use_muon=False)], **kw)
    b = torch.optim.AdamW(theirs, **kw)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in ours]
        for p, q, g in zip(ours, theirs, grads):
            p.grad, q.grad = g.clone(), g.clone()
        a.step()
        b.step()
    for p, q in zip(ours, theirs):
        torch.testing.assert_close(p, q, atol=1e-12, rtol=0)


def test_gpt_hidden_matrices_go_to_muon_embeddings_and_head_to_adamw():
    model = archlab.create_model("gpt", vocab_size=11, block_size=8, n_layer=2, n_head=2, d_model=16,
                                 tie_weights=False)
    groups = muon_param_groups(model, muon_lr=0.02, adamw_lr=1e-3, weight_decay=0.1, momentum=0.95,
                               betas=(0.9, 0.95))
    name = {id(p): n for n, p in model.named_parameters()}
    muon = sorted(name[id(p)] for p in groups[0]["params"])
    assert groups[0]["use_muon"] and muon == sorted(
        f"h.{i}.{w}" for i in range(2) for w in ("attn.in_proj_weight", "attn.out_proj.weight", "mlp.0.weight",
                                                  "mlp.3.weight"))
    adam_matrices = sorted(name[id(p)] for p in groups[1]["params"])
    assert adam_matrices == ["lm_head.weight", "wpe.weight", "wte.weight"] and groups[1]["weight_decay"] == 0.1
    assert all(p.dim() == 1 for p in groups[2]["params"]) and groups[2]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_trainer_builds_muon_and_a_tiny_gpt_learns_with_it(one_thread):
    torch.manual_seed(0)
    model = archlab.create_model("gpt", vocab_size=8, block_size=16, n_layer=2, n_head=2, d_model=32)
    opt = build_optimizer(model, TrainConfig(optimizer="muon", lr=3e-3, muon_lr=0.02, weight_decay=0.0))
    assert isinstance(opt, Muon) and [g["use_muon"] for g in opt.param_groups] == [True, False, False]
    # A sequence that repeats with period 4: its next token is fully predictable from context.
    x = torch.arange(17).remainder(4).repeat(4, 1)
    first = None
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
        opt.zero_grad()
    assert loss.item() < 0.05 * first, (first, loss.item())


def test_muon_rejects_vectors_and_bad_settings():
    with pytest.raises(ValueError, match="Muon groups take matrices"):
        Muon([dict(params=[torch.nn.Parameter(torch.zeros(3))])])
    with pytest.raises(ValueError, match="ns_dtype must name a torch dtype"):
        Muon([dict(params=[torch.nn.Parameter(torch.zeros(3, 3))])], ns_dtype="bf16")
    with pytest.raises(ValueError, match="momentum must be in"):
        Muon([dict(params=[torch.nn.Parameter(torch.zeros(3, 3))])], momentum=1.0)


def test_a_muon_run_resumes_exactly_from_its_checkpoint(tmp_path, one_thread):
    from archlab.train import RunSpec, train

    settings = {"hidden": "32", "batch_size": 32, "optimizer": "muon", "lr": 3e-3, "muon_lr": 0.02,
                "max_steps": 12, "save_every": 6, "log_every": 6, "dropout": 0.0}

    full = train(RunSpec(task="classify", model="mlp", data="digits", out=tmp_path / "full", settings=settings))
    # The same run stopped after its step-6 checkpoint: the later checkpoint removed, then resumed.
    shutil.copytree(tmp_path / "full", tmp_path / "resumed")
    shutil.rmtree(tmp_path / "resumed" / "checkpoints" / "step-00000012")
    (tmp_path / "resumed" / "model.safetensors").unlink()  # the final model must come from the resumed run
    resumed = train(RunSpec(task="classify", model="mlp", data="digits", out=tmp_path / "resumed",
                            settings=settings, resume=True))
    assert resumed["step"] == 12
    a = archlab.from_pretrained(tmp_path / "full").state_dict()
    b = archlab.from_pretrained(tmp_path / "resumed").state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert full["metrics"] == resumed["metrics"]
