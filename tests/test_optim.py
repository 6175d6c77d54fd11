"""RowAdam, the optimiser of the vq logits: Adam on the rows a gradient touches, nothing elsewhere; its CUDA kernel
(engine/cuda/row_adam.cu) against the torch reference, as a host C++ build here and through NVRTC on a GPU."""
import ctypes

import pytest
import torch

from engine import optim
from engine.cuda.row_adam import SOURCE_PATH as ROW_ADAM_SOURCE
from engine.optim import RowAdam
from tests.host_build import host_library, needs_cxx


def test_dense_gradients_match_torch_adam():
    torch.manual_seed(0)
    a = torch.randn(40, 8, dtype=torch.float64, requires_grad=True)
    b = a.detach().clone().requires_grad_(True)
    ours, ref = RowAdam([a], lr=0.1, betas=(0.9, 0.99), eps=1e-15), torch.optim.Adam([b], lr=0.1, betas=(0.9, 0.99),
                                                                                         eps=1e-15)
    for _ in range(5):
        g = torch.randn(40, 8, dtype=torch.float64)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(a, b)


def test_sparse_gradient_moves_only_its_rows_like_adam_on_those_rows(monkeypatch):
    monkeypatch.setattr(optim, "CHUNK_ELEMENTS", 16)  # several chunks of two rows
    torch.manual_seed(1)
    a = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    rows = torch.tensor([2, 5, 6, 11, 29])
    sub = a.detach()[rows].clone().requires_grad_(True)
    ours, ref = RowAdam([a], lr=0.05), torch.optim.Adam([sub], lr=0.05, betas=(0.9, 0.99), eps=1e-15)
    before = a.detach().clone()
    for _ in range(3):
        values = torch.randn(5, 8, dtype=torch.float64)
        a.grad = torch.sparse_coo_tensor(rows[None], values, a.shape, check_invariants=False)
        sub.grad = values.clone()
        ours.step()
        ref.step()
    untouched = torch.ones(30, dtype=torch.bool)
    untouched[rows] = False
    assert torch.equal(a.detach()[untouched], before[untouched])
    torch.testing.assert_close(a.detach()[rows], sub.detach())


def test_beta1_zero_keeps_no_first_moment():
    a = torch.zeros(4, 3, requires_grad=True)
    opt = RowAdam([a], lr=0.1, betas=(0.0, 0.99))
    a.grad = torch.ones(4, 3)
    opt.step()
    assert "exp_avg" not in opt.state[a]
    torch.testing.assert_close(a.detach(), torch.full((4, 3), -0.1))  # first step: lr * sign(grad)


def test_rejects_bad_betas():
    with pytest.raises(ValueError):
        RowAdam([torch.zeros(2, 2, requires_grad=True)], lr=0.1, betas=(1.0, 0.99))


def _random_case(seed: int, beta1: float):
    gen = torch.Generator().manual_seed(seed)
    param, v = torch.randn(200, 24, generator=gen), torch.rand(200, 24, generator=gen)
    m = torch.randn(200, 24, generator=gen) if beta1 > 0 else None
    rows = torch.randperm(200, generator=gen)[:70]  # unique, unsorted
    grad = torch.randn(70, 24, generator=gen)
    return param, rows, grad, v, m


def _reference(param, rows, grad, v, m, beta1):
    param, v, m = param.clone(), v.clone(), None if m is None else m.clone()
    optim.row_adam_reference(param, rows, grad, v, m, beta1, 0.99, 0.05, 0.3, 1e-8)
    return param, v, m


@needs_cxx
@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_host_build_of_the_kernel_equals_the_reference(tmp_path, beta1):
    lib = host_library(ROW_ADAM_SOURCE, [], tmp_path)
    f = lib.row_adam_host
    f.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_longlong, ctypes.c_int] + [ctypes.c_float] * 5
    for with_rows in (True, False):
        param, rows, grad, v, m = _random_case(3, beta1)
        if not with_rows:
            rows, grad = None, torch.randn(200, 24)
        want = _reference(param, rows, grad, v, m, beta1)
        f(None if rows is None else rows.data_ptr(), grad.data_ptr(), param.data_ptr(), v.data_ptr(),
          None if m is None else m.data_ptr(), grad.shape[0], 24, beta1, 0.99, 0.05, 0.3, 1e-8)
        torch.testing.assert_close(param, want[0])
        torch.testing.assert_close(v, want[1])
        if m is not None:
            torch.testing.assert_close(m, want[2])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("beta1", [0.0, 0.9])
def test_cuda_kernel_equals_the_reference(beta1):
    from engine.cuda.row_adam import row_adam, row_adam_reason
    assert row_adam_reason(torch.device("cuda")) is None
    param, rows, grad, v, m = _random_case(4, beta1)
    want = _reference(param, rows, grad, v, m, beta1)
    got = [t.cuda() if t is not None else None for t in (param, rows, grad, v, m)]
    row_adam(got[0], got[1], got[2], got[3], got[4], beta1, 0.99, 0.05, 0.3, 1e-8)
    torch.testing.assert_close(got[0].cpu(), want[0])
    torch.testing.assert_close(got[3].cpu(), want[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_optimizer_equals_cpu_optimizer():
    torch.manual_seed(2)
    a = torch.randn(1000, 64)
    rows = torch.randperm(1000)[:300].sort().values
    values = torch.randn(300, 64)
    results = []
    for device in ("cpu", "cuda"):
        p = a.clone().to(device).requires_grad_(True)
        opt = RowAdam([p], lr=0.1, betas=(0.0, 0.99))
        for _ in range(3):
            p.grad = torch.sparse_coo_tensor(rows[None], values, p.shape, check_invariants=False).to(device)
            opt.step()
        results.append(p.detach().cpu())
    torch.testing.assert_close(results[0], results[1])

