"""VQLogitsAdam, the optimiser of the vq logits: the straight-through gradient from each level's table gradient, then
Adam on the rows it touches and nothing elsewhere; its CUDA kernel (vq_adam, engine/cuda/vq_adam.cu) against its torch
twin vq_adam_torch, as a host C++ build here and through NVRTC on a GPU."""
import ctypes

import pytest
import torch

from engine.cuda.vq_adam import SOURCE_PATH as VQ_ADAM_SOURCE
from engine.cuda.vq_adam import VQAdamParams, vq_adam_params, vq_adam_torch
from engine.grids import FeatureGrid, ste_gradient
from engine.optim import VQLogitsAdam
from tests.host_build import assert_layout_matches, host_library, needs_cxx


def _grid(n=40, bits=3, feature_dim=8, seed=0) -> FeatureGrid:
    torch.manual_seed(seed)
    grid = FeatureGrid("vq", [n], feature_dim, bits)
    with torch.no_grad():
        grid.logits[0].normal_()
    grid.refresh_indices()
    return grid


def _step(opt: VQLogitsAdam, grid: FeatureGrid, upstream: torch.Tensor) -> None:
    """A forward and backward through level 0's corner table as the trainer does them, then the logits' step."""
    table = grid.corner_features(0)
    table.retain_grad()
    (table * upstream).sum().backward()
    opt.step([table.grad])
    opt.zero_grad()


def _optimizer(grid: FeatureGrid, **kw) -> VQLogitsAdam:
    return VQLogitsAdam(list(grid.logits), list(grid.codebooks), **kw)


def test_softmax_relaxed_gradient_is_plain_adam_on_every_row():
    grid = _grid()
    ref_param = grid.logits[0].detach().clone().requires_grad_(True)
    ours = _optimizer(grid, lr=0.1, betas=(0.9, 0.99))
    ref = torch.optim.Adam([ref_param], lr=0.1, betas=(0.9, 0.99), eps=1e-15)
    for _ in range(5):
        g = torch.randn(40, 8)
        grid.logits[0].grad, ref_param.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(grid.logits[0].detach(), ref_param.detach())


def test_straight_through_step_moves_only_touched_rows_like_adam_on_their_gradient():
    grid = _grid()
    rows = torch.tensor([2, 5, 6, 11, 29])
    sub = grid.logits[0].detach()[rows].clone().requires_grad_(True)
    ours = _optimizer(grid, lr=0.05)
    ref = torch.optim.Adam([sub], lr=0.05, betas=(0.0, 0.99), eps=1e-15)
    before = grid.logits[0].detach().clone()
    for _ in range(3):
        upstream = torch.zeros(40, 8)
        upstream[rows] = torch.randn(5, 8)
        logits, codebook = grid.logits[0].detach().clone(), grid.codebooks[0].detach().clone()
        _step(ours, grid, upstream)
        got_rows, values = ste_gradient(logits, codebook, upstream)
        assert torch.equal(got_rows, rows)
        sub.grad = values
        ref.step()
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(grid.logits[0].detach()[untouched], before[untouched])
    torch.testing.assert_close(grid.logits[0].detach()[rows], sub.detach())


def test_beta1_zero_keeps_no_first_moment():
    grid = _grid()
    opt = _optimizer(grid, lr=0.1, betas=(0.0, 0.99))
    _step(opt, grid, torch.randn(40, 8))
    assert "exp_avg" not in opt.state[grid.logits[0]] and opt.state[grid.logits[0]]["step"] == 1


def test_rejects_bad_betas():
    with pytest.raises(ValueError):
        _optimizer(_grid(), lr=0.1, betas=(1.0, 0.99))


def _random_case(seed: int, k: int, beta1: float, n: int = 120, feat: int = 16):
    gen = torch.Generator().manual_seed(seed)
    logits, sq = torch.randn(n, k, generator=gen) * 2, torch.rand(n, k, generator=gen)
    m = torch.randn(n, k, generator=gen) if beta1 > 0 else None
    codebook = torch.randn(k, feat, generator=gen)
    grad_table = torch.randn(n, feat, generator=gen) * 1e-3
    grad_table[torch.randperm(n, generator=gen)[: n // 3]] = 0  # corners no sample reached
    return logits, codebook, grad_table, sq, m


def _reference(case, estimator, beta1):
    logits, codebook, grad_table, sq, m = [None if t is None else t.clone() for t in case]
    vq_adam_torch(logits, codebook, grad_table, sq, m, estimator, beta1, 0.99, 0.05, 0.3, 1e-8)
    return logits, sq, m


CASES = [(k, estimator, beta1) for k in (16, 64, 100, 1024) for estimator in ("ste", "reinmax") for beta1 in (0.0, 0.9)]


@needs_cxx
def test_host_build_params_layout_matches_ctypes(tmp_path):
    lib = host_library(VQ_ADAM_SOURCE, ["-DFEAT=16"], tmp_path)
    assert_layout_matches(lib.vq_adam_params_layout, VQAdamParams)


@needs_cxx
@pytest.mark.parametrize("k,estimator,beta1", CASES)
def test_host_build_of_the_kernel_equals_the_reference(tmp_path, k, estimator, beta1):
    lib = host_library(VQ_ADAM_SOURCE, ["-DFEAT=16"], tmp_path)
    case = _random_case(3, k, beta1)
    want = _reference(case, estimator, beta1)
    logits, codebook, grad_table, sq, m = case
    before = logits.argmax(dim=1).to(torch.int32)
    indices = before.clone()
    codebook_t = codebook.t().contiguous()
    params = vq_adam_params(logits, codebook_t, grad_table, sq, m, estimator, beta1, 0.99, 0.05, 0.3, 1e-8, indices)
    lib.vq_adam_host(ctypes.byref(params))
    torch.testing.assert_close(logits, want[0])
    stepped = (grad_table != 0).any(dim=1)  # their argmax is kept up to date; other rows keep theirs
    assert torch.equal(indices[stepped], want[0].argmax(dim=1).to(torch.int32)[stepped])
    assert torch.equal(indices[~stepped], before[~stepped])
    torch.testing.assert_close(sq, want[1])
    if m is not None:
        torch.testing.assert_close(m, want[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("k,estimator,beta1", CASES)
def test_cuda_kernel_equals_the_reference(k, estimator, beta1):
    from engine.cuda.vq_adam import vq_adam, vq_adam_reason
    assert vq_adam_reason(torch.device("cuda")) is None
    case = _random_case(4, k, beta1, n=3000)
    want = _reference(case, estimator, beta1)
    got = [None if t is None else t.cuda() for t in case]
    indices = got[0].argmax(dim=1).to(torch.int32)
    vq_adam(got[0], got[1], got[2], got[3], got[4], estimator, beta1, 0.99, 0.05, 0.3, 1e-8, indices=indices)
    torch.testing.assert_close(got[0].cpu(), want[0])
    stepped = (case[2] != 0).any(dim=1)
    assert torch.equal(indices.cpu()[stepped], got[0].cpu().argmax(dim=1).to(torch.int32)[stepped])
    torch.testing.assert_close(got[3].cpu(), want[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_optimizer_equals_cpu_optimizer():
    results = []
    for device in ("cpu", "cuda"):
        grid = _grid(n=1000, bits=6, feature_dim=16, seed=2).to(device)
        opt = _optimizer(grid, lr=0.1)
        gen = torch.Generator().manual_seed(5)
        for _ in range(3):
            upstream = torch.randn(1000, 16, generator=gen)
            upstream[torch.randperm(1000, generator=gen)[:400]] = 0
            _step(opt, grid, upstream.to(device))
        results.append(grid.logits[0].detach().cpu())
    torch.testing.assert_close(results[0], results[1])


def test_the_index_table_follows_the_logits_without_a_full_argmax():
    grid = _grid(n=200, bits=4, feature_dim=8, seed=3)
    opt = grid.index_optimizer(lr=0.5, beta1=0.0, estimator="ste")
    gen = torch.Generator().manual_seed(1)
    changed = False
    for _ in range(6):
        before = grid.indices(0).clone()
        upstream = torch.randn(200, 8, generator=gen)
        upstream[torch.randperm(200, generator=gen)[:80]] = 0
        _step(opt, grid, upstream)
        changed |= not torch.equal(before, grid.indices(0))
        assert torch.equal(grid.indices(0), grid.logits[0].detach().argmax(dim=1))
    assert changed  # the steps did move some corners to other rows
