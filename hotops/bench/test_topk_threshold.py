"""Top-k hard thresholding and sparse Fourier projection (Bafna, Murtagh & Vyas, NeurIPS 2018).

Groups (one question each, baselines on the very same input):

* ``sparse_project 1024x28x28 k=40``: hotops ``sparse_project(x, 40, 'fft')`` and ``'dct'``
  against the torch pipeline people write today (``fft2 -> abs -> topk -> scatter ->
  ifft2``, baseline) and SciPy (``dctn`` + ``np.partition`` threshold + ``idctn``, baseline).
* ``topk_threshold 1024x50176 k=5000``: the threshold alone against a copy of the array
  (memory yardstick), ``torch.topk`` + scatter and ``np.argpartition`` + put (baselines).
* ``sparse_project 64x3x224x224 k=5000`` (ImageNet-sized): hotops fft/dct against the torch pipeline.
* ``iht 1024x28x28 k=40 t=20 10 iterations``: hotops ``iht`` against the same algorithm in
  torch (DCT as 28x28 matrix products, H_t and H_k by ``topk`` + scatter).

CUDA variants (``device`` = cuda, skipped without a GPU) run the torch baselines and the
hotops path (cuFFT + numba.cuda select through ``hotops.bindings.sparse_project``) on the
device. No speed assertions here: hotops/bench/report.py reports the ratios.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.fft as sfft
import torch

import hotops
import hotops.bindings as hb

OP = "topk_threshold"


def _sid(shape):
    return "x".join(map(str, shape))


# --------------------------------------------------------------------------- implementations

def torch_pipeline(x, k):
    """fft2 -> abs -> topk -> scatter -> ifft2 (real part): the torch way to project."""
    X = torch.fft.fft2(x, norm="ortho")
    flat = X.flatten(-2)
    idx = flat.abs().topk(k, dim=-1).indices
    kept = torch.zeros_like(flat).scatter_(-1, idx, flat.gather(-1, idx))
    return torch.fft.ifft2(kept.view_as(X), norm="ortho").real


def scipy_dct_partition(x, k):
    """scipy dctn + np.partition threshold + idctn (orthonormal)."""
    C = sfft.dctn(x, norm="ortho", axes=(-2, -1), workers=torch.get_num_threads())
    flat = C.reshape(-1, C.shape[-2] * C.shape[-1])
    a = np.abs(flat)
    thr = np.partition(a, -k, axis=1)[:, -k][:, None]
    C = np.where(a >= thr, flat, 0).reshape(C.shape)
    return sfft.idctn(C, norm="ortho", axes=(-2, -1), workers=torch.get_num_threads())


def _hotops_project(transform):
    def run(x, k):
        if isinstance(x, torch.Tensor):
            return hb.sparse_project(x, k, transform)
        return hotops.sparse_project(x, k, transform)

    return run


PROJECT = {
    "hotops fft": _hotops_project("fft"),
    "hotops dct": _hotops_project("dct"),
    "torch fft2-topk-ifft2": torch_pipeline,
    "scipy dctn-partition-idctn": scipy_dct_partition,
}
PROJECT_BASELINES = ("torch fft2-topk-ifft2", "scipy dctn-partition-idctn")


def _input_for(impl, x):
    """numpy view of a CPU tensor for the numpy implementations; the tensor otherwise."""
    if impl.startswith("scipy") or (impl.startswith("hotops") and x.device.type == "cpu"):
        return x.numpy()
    return x


@pytest.mark.parametrize("impl", list(PROJECT))
def test_sparse_project_mnist(bench, tensors, device, impl):
    if device == "cuda" and impl.startswith("scipy"):
        pytest.skip("SciPy runs on the CPU only")
    shape, k = (1024, 28, 28), 40
    x = tensors(shape, torch.float32, device)
    bench(PROJECT[impl], _input_for(impl, x), k, op="sparse_project", impl=impl,
          baseline=impl in PROJECT_BASELINES, group=f"sparse_project {_sid(shape)} k={k} float32 {device}",
          device=device, shape=list(shape), k=k)


@pytest.mark.parametrize("impl", ["hotops fft", "hotops dct", "torch fft2-topk-ifft2"])
def test_sparse_project_imagenet(bench, tensors, device, impl):
    shape, k = (64, 3, 224, 224), 5000
    x = tensors(shape, torch.float32, device)
    bench(PROJECT[impl], _input_for(impl, x), k, op="sparse_project", impl=impl,
          baseline=impl == "torch fft2-topk-ifft2", group=f"sparse_project {_sid(shape)} k={k} float32 {device}",
          device=device, shape=list(shape), k=k)


# --------------------------------------------------------------------------- threshold alone

def _hotops_threshold(x, k):
    if isinstance(x, np.ndarray):
        return hotops.topk_threshold(x, k)
    import cupy

    return hotops.topk_threshold(cupy.from_dlpack(x), k)


def _copy(x, k):
    return x.copy() if isinstance(x, np.ndarray) else x.clone()


def _torch_topk_scatter(x, k):
    idx = x.abs().topk(k, dim=-1).indices
    return torch.zeros_like(x).scatter_(-1, idx, x.gather(-1, idx))


def _np_argpartition(x, k):
    idx = np.argpartition(np.abs(x), -k, axis=1)[:, -k:]
    out = np.zeros_like(x)
    np.put_along_axis(out, idx, np.take_along_axis(x, idx, axis=1), axis=1)
    return out


THRESHOLD = {"hotops": _hotops_threshold, "copy": _copy, "torch topk+scatter": _torch_topk_scatter,
             "np.argpartition": _np_argpartition}


@pytest.mark.parametrize("impl", list(THRESHOLD))
def test_threshold(bench, tensors, device, impl):
    if device == "cuda" and impl == "np.argpartition":
        pytest.skip("numpy runs on the CPU only")
    if device == "cuda" and impl == "hotops":
        pytest.importorskip("cupy")
    shape, k = (1024, 50176), 5000
    x = tensors(shape, torch.float32, device)
    arg = x.numpy() if device == "cpu" and impl in ("hotops", "copy", "np.argpartition") else x
    bench(THRESHOLD[impl], arg, k, op=OP, impl=impl, baseline=impl != "hotops",
          group=f"{OP} {_sid(shape)} k={k} float32 {device}", device=device,
          bytes=2 * x.numel() * x.element_size(), shape=list(shape), k=k)


# --------------------------------------------------------------------------- IHT

def _dct_matrix(n, dtype, device):
    return torch.from_numpy(sfft.dct(np.eye(n), norm="ortho", axis=0)).to(dtype=dtype, device=device)


def torch_iht(y, k, t, n_iter):
    """Algorithm 1 of Bafna et al. in torch: DCT by matrix products, H by topk + scatter."""
    b, h, w = y.shape
    Dh, Dw = _dct_matrix(h, y.dtype, y.device), _dct_matrix(w, y.dtype, y.device)
    x = torch.zeros_like(y)
    e = torch.zeros_like(y)

    def hard(v, m):
        flat = v.reshape(b, -1)
        idx = flat.abs().topk(m, dim=-1).indices
        return torch.zeros_like(flat).scatter_(-1, idx, flat.gather(-1, idx)).view(b, h, w)

    for _ in range(n_iter):
        e = hard(y - x, t)
        C = hard(Dh @ (y - e) @ Dw.T, k)
        x = Dh.T @ C @ Dw
    return x, e


def _hotops_iht(y, k, t, n_iter):
    if isinstance(y, torch.Tensor) and y.device.type == "cuda":
        import cupy

        return hotops.iht(cupy.from_dlpack(y), k, t, n_iter=n_iter, tol=0)
    return hotops.iht(y, k, t, n_iter=n_iter, tol=0)


@pytest.mark.parametrize("impl", ["hotops", "torch"])
def test_iht(bench, tensors, device, impl):
    if device == "cuda" and impl == "hotops":
        pytest.importorskip("cupy")
    shape, k, t, n_iter = (1024, 28, 28), 40, 20, 10
    y = tensors(shape, torch.float32, device, kind="rand")
    arg = y.numpy() if device == "cpu" and impl == "hotops" else y
    fn = _hotops_iht if impl == "hotops" else torch_iht
    bench(fn, arg, k, t, n_iter, op="iht", impl=impl, baseline=impl == "torch",
          group=f"iht {_sid(shape)} k={k} t={t} {n_iter} iterations float32 {device}", device=device,
          shape=list(shape), k=k, t=t, n_iter=n_iter)
