"""Slow, obviously-correct references for every kernel. Never import hotops here."""
from __future__ import annotations

import numpy as np
import torch


def channel_max_abs(g) -> np.ndarray:
    """Simonyan et al. (2013) Sec. 3.1: M = max_c |g|, computed by torch in float64."""
    t = torch.as_tensor(np.asarray(g, dtype=np.float64))
    return t.abs().amax(1).numpy()


def channel_max_abs_argmax(g) -> np.ndarray:
    """First channel reaching the maximum magnitude, or the first NaN channel."""
    a = np.abs(np.asarray(g, dtype=np.float64))
    nan = np.isnan(a)
    first_nan = nan.argmax(1)
    return np.where(nan.any(1), first_nan, np.nan_to_num(a, nan=-1.0).argmax(1)).astype(np.int32)


def channel_max_abs_backward(grad_out, g) -> np.ndarray:
    """Loop over every pixel: sign(g) * grad_out on the winning channel, 0 elsewhere."""
    g = np.asarray(g, dtype=np.float64)
    grad_out = np.asarray(grad_out, dtype=np.float64)
    win = channel_max_abs_argmax(g)
    grad = np.zeros_like(g)
    n_img, _, height, width = g.shape
    for n in range(n_img):
        for i in range(height):
            for j in range(width):
                c = win[n, i, j]
                v = g[n, c, i, j]
                grad[n, c, i, j] = v if np.isnan(v) else np.sign(v) * grad_out[n, i, j]
    return grad


# --- VDSR: MATLAB bicubic imresize, colour, metrics, adjustable clipping --------------------


def _keys_cubic(d: float) -> float:
    """Keys (1981) cubic convolution kernel, a = -0.5, as MATLAB's imresize writes it."""
    a = abs(d)
    if a <= 1.0:
        return 1.5 * a**3 - 2.5 * a**2 + 1.0
    if a <= 2.0:
        return -0.5 * a**3 + 2.5 * a**2 - 4.0 * a + 2.0
    return 0.0


def matlab_contributions(n_in: int, n_out: int, scale: float, antialias: bool):
    """MATLAB imresize's taps for one axis, one output pixel at a time (0-based indices).

    Returns a list with, for every output pixel, a list of (input index, weight) in tap order.
    """
    stretch = antialias and scale < 1.0
    width = 4.0 / scale if stretch else 4.0
    taps = int(np.ceil(width)) + 2
    mirror = list(range(n_in)) + list(range(n_in - 1, -1, -1))
    rows = []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1.0 - 1.0 / scale)
        left = int(np.floor(u - width / 2.0))
        pairs = []
        for p in range(taps):
            j = left + p
            w = scale * _keys_cubic(scale * (u - j)) if stretch else _keys_cubic(u - j)
            pairs.append((mirror[(j - 1) % (2 * n_in)], w))
        total = np.sum(np.array([w for _, w in pairs]))
        rows.append([(j, w / total) for j, w in pairs])
    return rows


def _matlab_plan(h, w, scale, output_shape):
    if output_shape is not None:
        oh, ow = output_shape
        return (oh, ow), (oh / h, ow / w)
    sh, sw = (scale, scale) if np.ndim(scale) == 0 else scale
    return (int(np.ceil(sh * h)), int(np.ceil(sw * w))), (float(sh), float(sw))


def _resize_axis(x: np.ndarray, axis: int, rows, quantize: bool) -> np.ndarray:
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    out = np.zeros((len(rows),) + x.shape[1:])
    for i, pairs in enumerate(rows):
        acc = np.zeros(x.shape[1:])
        for j, w in pairs:
            acc = acc + w * x[j]
        out[i] = acc
    if quantize:
        out = np.floor(np.clip(out, 0.0, 255.0) + 0.5)
    return np.moveaxis(out, 0, axis)


def imresize_matlab(x, scale=None, output_shape=None, antialias=True) -> np.ndarray:
    """MATLAB ``imresize(x, ..., 'bicubic')``, one output pixel and one tap at a time.

    Layouts: (H, W) and (H, W, C) resize axes 0, 1; (N, C, H, W) resizes axes 2, 3. The axis
    with the smaller scale goes first (height on ties). uint8 is rounded half away from zero
    and saturated after each axis, as MATLAB does per one-dimensional pass. Returns float64
    (uint8 values as float64 for uint8 input).
    """
    x = np.asarray(x)
    ah, aw = (2, 3) if x.ndim == 4 else (0, 1)
    (oh, ow), (sh, sw) = _matlab_plan(x.shape[ah], x.shape[aw], scale, output_shape)
    quantize = x.dtype == np.uint8
    order = [(ah, oh, sh), (aw, ow, sw)] if sh <= sw else [(aw, ow, sw), (ah, oh, sh)]
    y = x.astype(np.float64)
    for axis, n_out, s in order:
        y = _resize_axis(y, axis, matlab_contributions(y.shape[axis], n_out, s, antialias), quantize)
    return y


def imresize_matrix(n_in: int, n_out: int, scale: float, antialias: bool) -> np.ndarray:
    """Dense (n_out, n_in) matrix of one axis of the MATLAB resize (duplicate taps added)."""
    m = np.zeros((n_out, n_in))
    for i, pairs in enumerate(matlab_contributions(n_in, n_out, scale, antialias)):
        for j, w in pairs:
            m[i, j] += w
    return m


def imresize_transpose_dense(g, input_shape, scale=None, output_shape=None, antialias=True) -> np.ndarray:
    """A_H^T g A_W for the dense per-axis matrices: the adjoint of ``imresize_matlab``."""
    g = np.asarray(g, dtype=np.float64)
    h, w = input_shape
    (oh, ow), (sh, sw) = _matlab_plan(h, w, scale, output_shape)
    mh, mw = imresize_matrix(h, oh, sh, antialias), imresize_matrix(w, ow, sw, antialias)
    if g.ndim == 4:
        return np.einsum("ia,ncij,jb->ncab", mh, g, mw)
    if g.ndim == 3:
        return np.einsum("ia,ijc,jb->abc", mh, g, mw)
    return mh.T @ g @ mw


def rgb2ycbcr_matlab(rgb) -> np.ndarray:
    """MATLAB ``rgb2ycbcr`` pixel by pixel: floats on the [0, 1] scale, uint8 rounded."""
    rgb = np.asarray(rgb)
    t = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]])
    off = np.array([16.0, 128.0, 128.0])
    flat = rgb.reshape(-1, 3).astype(np.float64)
    out = np.empty_like(flat)
    for p in range(flat.shape[0]):
        for c in range(3):
            if rgb.dtype == np.uint8:
                k = (1.0 / 255.0) * t[c]  # MATLAB: T = scaleFactor.uint8.T * origT
                v = (k[0] * flat[p, 0] + k[1] * flat[p, 1] + k[2] * flat[p, 2]) + off[c]
                out[p, c] = np.floor(min(max(v, 0.0), 255.0) + 0.5)
            else:
                out[p, c] = (t[c, 0] * flat[p, 0] + t[c, 1] * flat[p, 1] + t[c, 2] * flat[p, 2] + off[c]) / 255.0
    return out.reshape(rgb.shape)


def psnr(a, b, shave=0, peak=1.0) -> float:
    """10 log10(peak^2 / MSE) over the image with ``shave`` pixels cut from each border."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if shave:
        a, b = a[shave:-shave, shave:-shave], b[shave:-shave, shave:-shave]
    mse = np.mean((a - b) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def clip_adjustable(grads, theta, lr):
    """Kim et al. (2016) Sec. 3.1: a loop of clamps to [-theta/lr, theta/lr]; returns copies
    and the fraction of elements whose magnitude exceeded the bound (in each array's dtype)."""
    out, clipped, total = [], 0, 0
    for g in grads:
        g = np.array(g, copy=True)
        bound = g.dtype.type(theta / lr)
        clipped += int(np.count_nonzero(np.abs(g) > bound))
        total += g.size
        out.append(np.clip(g, -bound, bound))
    return out, (clipped / total if total else 0.0)


# --- RevNet (Gomez et al. 2017): reversible coupling, fixed point ------------------------------

def rev_couple(y, f, sign, acc=None, add=None):
    """Element by element: y + sign * f (and acc + add), returned as new arrays with the
    count of non-finite values of the new y."""
    y = np.array(y, copy=True)
    for i in np.ndindex(y.shape):
        y[i] = y[i] + y.dtype.type(sign) * f[i]
    bad = int(sum(1 for v in y.ravel() if not np.isfinite(v)))
    if acc is None:
        return y, bad
    acc = np.array(acc, copy=True)
    for i in np.ndindex(acc.shape):
        acc[i] = acc[i] + add[i]
    return y, bad, acc


def rev_quantize(x, frac_bits, limit):
    """floor(x * 2^frac + 1/2) per element in Python integers; None where out of range."""
    out = []
    for v in np.asarray(x, dtype=np.float64).ravel():
        t = float(v) * 2.0**frac_bits + 0.5
        out.append(int(np.floor(t)) if (np.isfinite(t) and -limit < t < limit) else None)
    return out


def rev_quantize_couple(y, f, frac_bits, sign, limit):
    """y + sign * round(f) on Python integers; elements that fail stay and are counted."""
    y = np.array(y, copy=True)
    flat = y.reshape(-1)
    bad = 0
    for k, r in enumerate(rev_quantize(f, frac_bits, limit)):
        if r is None:
            bad += 1
            continue
        s = int(flat[k]) + sign * r
        if abs(s) > limit:
            bad += 1
        else:
            flat[k] = s
    return y, bad


# --- Sparse Fourier (Bafna et al. 2018): top-k threshold, Hermitian DFT selection, IHT -------


def topk_magnitude(c) -> np.ndarray:
    """|c| as the kernels rank it: |x| for real; complex64: re^2 + im^2 in float64 (monotone
    in |z|), complex128: hypot(re, im)."""
    c = np.asarray(c)
    if c.dtype == np.complex64:
        re, im = c.real.astype(np.float64), c.imag.astype(np.float64)
        return re * re + im * im
    if c.dtype.kind == "c":
        return np.hypot(c.real, c.imag)
    return np.abs(c).astype(np.float64)


def topk_threshold(c, k, axis=-1):
    """H_k by argpartition + the tie rule: (kept values, mask); ties keep the lower index.

    The k-th largest magnitude T is found with np.partition; every entry above T is kept, and
    the first (k - #above) entries equal to T in index order.
    """
    c = np.asarray(c)
    x = np.moveaxis(c, axis, -1)
    n = x.shape[-1]
    rows = x.reshape(-1, n)
    mag = topk_magnitude(rows)
    mask = np.zeros(rows.shape, bool)
    for r in range(rows.shape[0]):
        thr = np.partition(mag[r], n - k)[n - k]
        above = mag[r] > thr
        need = k - int(above.sum())
        ties = np.flatnonzero(mag[r] == thr)[:need]
        mask[r] = above
        mask[r, ties] = True
    out = np.where(mask, rows, 0).astype(c.dtype)
    out = np.moveaxis(out.reshape(x.shape), -1, axis)
    return out, np.moveaxis(mask.reshape(x.shape), -1, axis)


def hermitian_support(x, k):
    """Conjugate-closed DFT support of a real 2-D signal x by brute force over the full spectrum.

    Units: conjugate pairs {f, -f} (cost 2) and self-conjugate coefficients (cost 1), ranked by
    magnitude (descending; ties by the lower rfftn half-spectrum flat index of the unit's
    representative); the longest prefix of cost <= k is kept. Returns the full (H, W) mask.
    """
    h, w = x.shape
    X = np.fft.fft2(np.asarray(x, dtype=np.float64), norm="ortho")
    wh = w // 2 + 1
    units = []
    seen = set()
    for u in range(h):
        for v in range(wh):
            f, g = (u, v), ((-u) % h, (-v) % w)
            if f in seen:
                continue
            seen.add(f)
            seen.add(g)
            cost = 1 if f == g else 2
            units.append((-abs(X[u, v]), u * wh + v, cost, f, g))
    units.sort(key=lambda t: (t[0], t[1]))
    mask = np.zeros((h, w), bool)
    budget = k
    for _, _, cost, f, g in units:
        if cost > budget:
            break
        budget -= cost
        mask[f] = mask[g] = True
    return mask


def sparse_project_dense(x, k, transform="dct"):
    """F^-1 H_k F x for one 2-D real signal with explicit orthonormal matrices (float64)."""
    from scipy.fft import dct

    x = np.asarray(x, dtype=np.float64)
    h, w = x.shape
    if transform == "dct":
        Dh = dct(np.eye(h), norm="ortho", axis=0)
        Dw = dct(np.eye(w), norm="ortho", axis=0)
        C = Dh @ x @ Dw.T
        kept, _ = topk_threshold(C.reshape(1, -1), k)
        return Dh.T @ kept.reshape(h, w) @ Dw
    mask = hermitian_support(x, k)
    X = np.fft.fft2(x, norm="ortho")
    return np.fft.ifft2(np.where(mask, X, 0), norm="ortho").real


def iht_dense(y, k, t, n_iter):
    """Algorithm 1 of Bafna et al. on one 2-D signal, written plainly (DCT, all iterations)."""
    y = np.asarray(y, dtype=np.float64)
    x = np.zeros_like(y)
    e = np.zeros_like(y)
    for _ in range(n_iter):
        e, _ = topk_threshold((y - x).reshape(1, -1), t)
        e = e.reshape(y.shape)
        x = sparse_project_dense(y - e, k, "dct")
    return x, e


# --- NMF: plain numpy multiplicative updates, float64 --------------------------

NMF_EPSILON = float(np.finfo(np.float32).eps)


def nmf_gamma(beta: float) -> float:
    """Fevotte & Idier (2011), Table 2: the exponent that keeps MU non-increasing."""
    if beta < 1:
        return 1.0 / (2.0 - beta)
    if beta > 2:
        return 1.0 / (beta - 1.0)
    return 1.0


def _nmf_side(V, WH, M, beta):
    """(num weights, den weights) on the full m x n grid, with scikit-learn's clamping."""
    whc = np.maximum(WH, NMF_EPSILON) if beta < 2 else WH
    whd = np.maximum(WH, NMF_EPSILON) if beta < 1 else WH
    A = V * whc ** (beta - 2.0)
    B = whd ** (beta - 1.0)
    if M is not None:
        A, B = M * A, M * B
    return A, B


def nmf_mu(V, W, H, beta=2.0, n_iter=1, l1_W=0.0, l1_H=0.0, l2_W=0.0, l2_H=0.0, mask=None):
    """``n_iter`` multiplicative updates (W first, then H) on dense float64 copies.

    Lee & Seung (2001) eqs. (4)-(5) written as the general weighted beta rule
    ``F <- F * (num / (den + l1 + l2 F))^gamma``, num = (M V WH^(beta-2)) H^T and
    den = (M WH^(beta-1)) H^T (and the W^T (.) forms for H); zero denominators become eps,
    and W (beta < 1) / H (beta <= 1) entries below float64's eps are set to 0.
    """
    V = np.asarray(V.toarray() if hasattr(V, "toarray") else V, dtype=np.float64)
    M = None if mask is None else np.asarray(mask.toarray() if hasattr(mask, "toarray") else mask, np.float64)
    W = np.array(W, dtype=np.float64)
    H = np.array(H, dtype=np.float64)
    g = nmf_gamma(beta)
    tiny = np.finfo(np.float64).eps
    for _ in range(n_iter):
        A, B = _nmf_side(V, W @ H, M, beta)
        den = B @ H.T + l1_W + l2_W * W
        den[den == 0] = NMF_EPSILON
        W = W * ((A @ H.T) / den) ** g
        if beta < 1:
            W[W < tiny] = 0
        A, B = _nmf_side(V, W @ H, M, beta)
        if M is None and beta == 1:
            # scikit-learn: the KL denominator of H is W's column sums with zeros set to 1
            colsum = W.sum(axis=0)
            colsum[colsum == 0] = 1.0
            den = np.repeat(colsum[:, None], H.shape[1], axis=1) + l1_H + l2_H * H
        else:
            den = W.T @ B + l1_H + l2_H * H
        den[den == 0] = NMF_EPSILON
        H = H * ((W.T @ A) / den) ** g
        if beta <= 1:
            H[H < tiny] = 0
    return W, H


def nmf_divergence(V, W, H, beta=2.0, mask=None) -> float:
    """sum_ij M_ij d_beta(V_ij | (WH)_ij), with 0 log 0 = 0 (no clamping): the objective."""
    V = np.asarray(V.toarray() if hasattr(V, "toarray") else V, dtype=np.float64)
    WH = np.asarray(W, np.float64) @ np.asarray(H, np.float64)
    M = np.ones_like(V) if mask is None else np.asarray(mask.toarray() if hasattr(mask, "toarray") else mask, np.float64)
    if beta == 2:
        d = 0.5 * (V - WH) ** 2
    elif beta == 1:
        with np.errstate(divide="ignore", invalid="ignore"):
            d = np.where(V > 0, V * np.log(V / WH), 0.0) - V + WH
    elif beta == 0:
        d = V / WH - np.log(V / WH) - 1.0
    else:
        d = (V**beta + (beta - 1.0) * WH**beta - beta * V * WH ** (beta - 1.0)) / (beta * (beta - 1.0))
    with np.errstate(invalid="ignore"):
        return float(np.where(M > 0, M * d, 0.0).sum())  # entries with weight 0 do not count


# ============================================================================ saliency,
# ReLU rules, GMM log-likelihood, GraphCut energy (Simonyan et al. 2013)

def gmm_log_likelihood(x, weights, means, covariances) -> np.ndarray:
    """log sum_k pi_k N(x_p; mu_k, Sigma_k), pixel by pixel with scipy's multivariate normal."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    out = np.empty(x.shape[0])
    for p in range(x.shape[0]):
        terms = [np.log(w[k]) + multivariate_normal(means[k], covariances[k]).logpdf(x[p]) for k in range(len(w))]
        out[p] = logsumexp(terms)
    return out


def relu_rule_backward(x, grad, rule: str) -> np.ndarray:
    """R_n from R_{n+1} = grad at one ReLU with input x (Simonyan et al. 2013, Sec. 4), element by element."""
    x = np.asarray(x, dtype=np.float64)
    g = np.asarray(grad, dtype=np.float64)
    out = np.zeros_like(g)
    for i in np.ndindex(g.shape):
        if rule == "gradient":
            out[i] = g[i] if x[i] > 0 else 0.0
        elif rule == "deconvnet":
            out[i] = g[i] if g[i] > 0 else 0.0
        elif rule == "guided":
            out[i] = g[i] if (x[i] > 0 and g[i] > 0) else 0.0
        else:
            raise ValueError(rule)
    return out


def graphcut_energy(labels, source, sink, weights, directions) -> float:
    """E(a) = sum_m [a_m bg] source_m + [a_m fg] sink_m + sum_(m, m+d) w_d[m] [a_m != a_(m+d)],
    labels True = foreground, pixel by pixel."""
    h, w = labels.shape
    e = 0.0
    for i in range(h):
        for j in range(w):
            e += sink[i, j] if labels[i, j] else source[i, j]
            for (dy, dx), wd in zip(directions, weights):
                ii, jj = i + dy, j + dx
                if 0 <= ii < h and 0 <= jj < w and labels[i, j] != labels[ii, jj]:
                    e += wd[i, j]
    return float(e)


def brute_force_cut(source, sink, weights, directions) -> float:
    """The minimum of ``graphcut_energy`` over all 2^(H W) labellings (tiny grids only)."""
    h, w = source.shape
    best = np.inf
    for code in range(2 ** (h * w)):
        labels = np.array([(code >> b) & 1 for b in range(h * w)], bool).reshape(h, w)
        best = min(best, graphcut_energy(labels, source, sink, weights, directions))
    return best
