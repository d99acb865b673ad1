"""Speed of the non-Cartesian operators and CG-SENSE: mskjax against sigpy and torchkbnufft.

Cases (complex64 data, float32 coordinates in cycles per field of view; the same arrays for
every implementation in one run):

- ``2d``: 8 coils, a 256 x 256 image, 402 golden-angle radial spokes (angle step
  ``pi / golden ratio``, about 111.25 degrees) of 512 samples, ``k = (s - 256) / 2`` for
  ``s = 0 .. 511``: 205,824 points in ``[-128, 127.5]``.
- ``3d``: a kooshball: 4 coils, a 64^3 image, 2,048 spokes of 128 samples (``k`` in
  ``[-32, 31.5]``) along directions from the 2D golden means (Chan et al. 2009):
  ``kz = frac(m * 0.4656)``, azimuth ``2 pi frac(m * 0.6823)``: 262,144 points.

Rows, each timed for every implementation on the same input:

- ``forward``: the NUFFT of all coil images ``(coils, *grid) -> (coils, *trajectory)``.
- ``adjoint``: its adjoint.
- ``normal fwd+adj``: forward then adjoint of all coil images.
- ``normal Toeplitz``: ``F^H F`` as a convolution on a grid twice the size, the kernel
  computed beforehand: mskjax's ``NUFFT(coords, shape=...).N`` and torchkbnufft's
  ``ToepNufft`` with ``calc_toeplitz_kernel`` (sigpy has none).
- ``Toeplitz kernel``: computing that kernel (once per trajectory).
- ``CG-SENSE``: 30 conjugate-gradient iterations on the SENSE normal equations (no
  regularisation, no density compensation) from the simulated k-space of a Shepp-Logan
  phantom with birdcage maps and 1 % noise: mskjax ``recon.cg_sense(kspace, maps,
  coords=coords, max_iter=30)`` (Toeplitz normal operator; the kernel is computed inside the
  timed call), sigpy ``sigpy.mri.app.SenseRecon(kspace, maps, coord=coords, max_iter=30)``
  (forward and adjoint NUFFT every iteration), and a 30-iteration CG written here in torch
  on torchkbnufft's ``ToepNufft`` with the coil maps (``smaps``), the kernel computed inside
  the timed call too.

Implementations and their conventions (checked at the start of every run against an
explicit non-uniform DFT on small 2D and 3D grids, forward and adjoint; the run stops if an
implementation disagrees by more than 5 %):

- mskjax ``linop.NUFFT`` (jax-finufft), ``eps=1e-6`` (its default) and ``eps=1e-4``;
  centred, orthonormal, coordinates in cycles per field of view.
- sigpy ``sigpy.nufft`` / ``nufft_adjoint``: the same units, centring and scaling; its
  defaults (oversampling 1.25, Kaiser-Bessel width 4).
- torchkbnufft ``KbNufft`` / ``KbNufftAdjoint``: points in radians ``2 pi k / n`` laid out
  ``(ndim, points)``, the same centring and sign; without ``norm`` its transforms are
  unnormalised, so the outputs here are multiplied by ``N**-1/2`` (``N**-1`` for the
  normal operators; ``norm='ortho'`` would normalise by the oversampled grid instead);
  its defaults (grid 2x, 6 neighbours per axis, table interpolation).

The accuracy of each against the non-uniform DFT is printed; the implementations do not
compute to the same accuracy (sigpy's defaults about 7e-3, torchkbnufft's about 7e-4,
mskjax's about 1e-6, and about 1e-4 at ``eps=1e-4``; FINUFFT's ``eps=1e-3`` gives about 2e-3
in 2D, less accurate than torchkbnufft), so mskjax's ``eps=1e-4`` rows are the comparison
at an accuracy at least that of both peers (checked and printed in every run).

Agreement, printed beside each time: ``rel diff``, the relative difference of the output
from mskjax's (``eps=1e-6``; for the normal rows, mskjax's forward-then-adjoint), and for
CG-SENSE ``data fit``, ``||A x - y|| / ||y||`` of each result ``x`` with one model ``A``
(mskjax's ``NufftSense`` at ``eps=1e-6``) for all, which says whether each ran an equally
converged solve. Without density compensation the normal equations are ill-conditioned and
30 float32 CG iterates are sensitive to small changes of the operator: in 3D mskjax's own
result with the Toeplitz normal operator and with forward-then-adjoint differ by about 2 %,
so CG-SENSE differences of a few percent between implementations are expected there, with
equal data fits.

Threads: ``--threads T`` (default: every core) pins the process to ``T`` cores
(``sched_setaffinity``, which also sizes XLA's thread pool) and sets ``OMP_NUM_THREADS``
(FINUFFT's threads), ``NUMBA_NUM_THREADS``, ``torch.set_num_threads`` and the BLAS thread
counts to ``T``, before any of the libraries is imported. sigpy's CPU NUFFT (numba kernels
compiled without ``parallel``, numpy's FFT) runs on one thread whatever ``T`` is.

Timing: for each row the implementations are called once (the first call, with compilation
for mskjax, numba and TorchScript for the peers), then ``--repeats`` rounds in which every
implementation runs once in turn (interleaved, so that load from other processes falls on
all alike); the steady state is the median (``block_until_ready``) of the ``n`` samples.
An implementation that has spent more than ``--budget`` seconds in a row (and has one
sample) sits out its remaining rounds, so that the slow peers do not make the run long.
The Toeplitz kernel and CG-SENSE rows use ``--cg-repeats`` rounds, and there the peers'
first calls (nothing left to compile: their kernels ran in the earlier rows) count as one
more sample. The load average is recorded before and after each case. Ratios are the
peer's steady time over mskjax's: above 1, mskjax is faster.

Also timed (forward and adjoint, with its accuracy), for the record: jax-finufft called
directly with FINUFFT's ``upsampfac=1.25`` instead of its automatic choice, which mskjax's
NUFFT does not expose.

Prints a table and writes ``benchmarks/results/nufft_speed/threads{T}.json``
(``quick_threads{T}.json`` with ``--quick``).

    python benchmarks/nufft_speed.py [--cases 2d,3d] [--repeats 9] [--cg-repeats 2]
                                     [--budget 10] [--threads T] [--quick]
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":  # pin the threads before jax, torch, numba and numpy are imported
    _argv = sys.argv[1:]
    _cores = sorted(os.sched_getaffinity(0))
    _value = str(len(_cores))
    for _i, _arg in enumerate(_argv):
        if _arg.startswith("--threads="):
            _value = _arg.split("=", 1)[1]
        elif _arg == "--threads" and _i + 1 < len(_argv):
            _value = _argv[_i + 1]
    if not (_value.isdigit() and 1 <= int(_value) <= len(_cores)):
        sys.exit(f"nufft_speed.py: --threads must be an integer in [1, {len(_cores)}] (the "
                 f"cores this process may use), got {_value!r}")
    _threads = int(_value)
    os.sched_setaffinity(0, _cores[:_threads])
    for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                 "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads)
else:  # imported: the importer's settings stand
    _threads = len(os.sched_getaffinity(0))

import argparse
import inspect
import json
import math
import platform
import statistics
import subprocess
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jax_finufft
import numba
import numpy as np
import sigpy
import sigpy.mri
import torch
import torchkbnufft as tkbn
from jax_finufft import nufft1, nufft2, options

import mskjax
from mskjax import coils, linop, recon, solvers

ITERATIONS = 30
LOW_EPS = 1e-4
NOISE = 0.01

CASES = {
    # name: (coils, grid, spokes, samples per spoke)
    "2d": (8, (256, 256), 402, 512),
    "3d": (4, (64, 64, 64), 2048, 128),
}
QUICK_CASES = {
    "2d": (4, (64, 64), 60, 128),
    "3d": (2, (16, 16, 16), 200, 32),
}
GOLDEN_ANGLE = math.pi * 2 / (1 + math.sqrt(5))  # pi / golden ratio, ~111.25 degrees
GOLDEN_MEANS_3D = (0.4656, 0.6823)

PEERS = ("sigpy", "torchkbnufft")


# -- trajectories and data ---------------------------------------------------------------

def radial_2d(grid, spokes, samples):
    """Golden-angle spokes ``(spokes, samples, 2)`` in cycles per FOV, ``[-n/2, n/2)``."""
    n = grid[0]
    radius = (np.arange(samples) - samples / 2) * (n / samples)
    angle = np.arange(spokes) * GOLDEN_ANGLE
    return np.stack([np.outer(np.cos(angle), radius), np.outer(np.sin(angle), radius)],
                    axis=-1).astype(np.float32)


def kooshball(grid, spokes, samples):
    """3D radial spokes ``(spokes, samples, 3)`` through the centre, golden-means directions."""
    n = grid[0]
    m = np.arange(spokes)
    kz = (m * GOLDEN_MEANS_3D[0]) % 1.0
    azimuth = 2 * np.pi * ((m * GOLDEN_MEANS_3D[1]) % 1.0)
    sin_polar = np.sqrt(1 - kz ** 2)
    direction = np.stack([kz, sin_polar * np.cos(azimuth), sin_polar * np.sin(azimuth)], -1)
    radius = (np.arange(samples) - samples / 2) * (n / samples)
    return (direction[:, None, :] * radius[None, :, None]).astype(np.float32)


def make_case(num_coils, grid, spokes, samples):
    coords = (radial_2d if len(grid) == 2 else kooshball)(grid, spokes, samples)
    maps = np.asarray(coils.birdcage_maps((num_coils, *grid), coils_per_ring=num_coils))
    image = sigpy.shepp_logan(grid, dtype=np.complex64)
    clean = np.asarray(linop.NufftSense(maps, coords)(image))
    rng = np.random.default_rng(0)
    scale = NOISE * np.abs(clean).mean() / math.sqrt(2)
    kspace = (clean + scale * (rng.standard_normal(clean.shape)
                               + 1j * rng.standard_normal(clean.shape))).astype(np.complex64)
    x = (rng.standard_normal((num_coils, *grid))
         + 1j * rng.standard_normal((num_coils, *grid))).astype(np.complex64)
    return {"coords": coords, "maps": maps.astype(np.complex64), "kspace": kspace,
            "coil_images": x, "grid": tuple(grid), "num_coils": num_coils}


def omega_of(coords, grid):
    """torchkbnufft's points: radians ``2 pi k / n``, ``(ndim, points)``."""
    flat = coords.reshape(-1, len(grid)) * (2 * np.pi / np.asarray(grid, np.float32))
    return torch.from_numpy(np.ascontiguousarray(flat.T.astype(np.float32)))


# -- the convention check against an explicit non-uniform DFT ------------------------------

def check_conventions():
    """Relative error of each implementation against the NUDFT on small grids (float64)."""
    rng = np.random.default_rng(1)
    out = {}
    for grid in [(16, 12), (8, 10, 6)]:
        ndim, size = len(grid), math.prod(grid)
        coords = (rng.uniform(-0.5, 0.5, (300, ndim)) * np.asarray(grid)).astype(np.float32)
        x = (rng.standard_normal(grid) + 1j * rng.standard_normal(grid)).astype(np.complex64)
        y = (rng.standard_normal(300) + 1j * rng.standard_normal(300)).astype(np.complex64)
        offsets = np.stack(np.meshgrid(*[np.arange(n) - n // 2 for n in grid], indexing="ij"),
                           -1).reshape(-1, ndim)
        phase = np.exp(-2j * np.pi * (coords.astype(np.float64) / np.asarray(grid))
                       @ offsets.T) / math.sqrt(size)
        ref_fwd = phase @ x.reshape(-1).astype(np.complex128)
        ref_adj = (phase.conj().T @ y.astype(np.complex128)).reshape(grid)
        omega = omega_of(coords, grid)
        results = {
            "mskjax": (linop.NUFFT(coords, shape=grid)(x), linop.NUFFT(coords, shape=grid).H(y)),
            f"mskjax eps={LOW_EPS:g}": (linop.NUFFT(coords, shape=grid, eps=LOW_EPS)(x),
                                        linop.NUFFT(coords, shape=grid, eps=LOW_EPS).H(y)),
            "sigpy": (sigpy.nufft(x, coords), sigpy.nufft_adjoint(y, coords, oshape=grid)),
            "torchkbnufft": (
                tkbn.KbNufft(im_size=grid)(torch.from_numpy(x)[None, None], omega)[0, 0].numpy()
                / math.sqrt(size),
                tkbn.KbNufftAdjoint(im_size=grid)(torch.from_numpy(y)[None, None],
                                                  omega)[0, 0].numpy() / math.sqrt(size)),
        }
        label = "x".join(map(str, grid))
        out[label] = {name: {"forward": relative(f, ref_fwd), "adjoint": relative(a, ref_adj)}
                      for name, (f, a) in results.items()}
    return out


def relative(a, b):
    a = np.asarray(a).astype(np.complex128).reshape(-1)
    b = np.asarray(b).astype(np.complex128).reshape(-1)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# -- timing --------------------------------------------------------------------------------

def block(value):
    """Wait for a JAX result (an array or an operator pytree); torch and numpy are eager."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value
    return jax.block_until_ready(value)


def time_row(impls, repeats, budget, warm=()):
    """``{name: {first_s, steady_s, samples, output}}``: first calls, then interleaved rounds.

    The first call of an implementation named in ``warm`` (nothing left to compile: its
    kernels ran in earlier rows) counts as one more steady-state sample. An implementation
    with at least one sample whose calls have taken more than ``budget`` seconds in all
    sits out the remaining rounds.
    """
    out = {}
    for name, fn in impls.items():
        start = time.perf_counter()
        value = block(fn())
        first = time.perf_counter() - start
        out[name] = {"first_s": first, "times": [first] if name in warm else [],
                     "spent": first, "output": value}
    for _ in range(repeats):
        for name, fn in impls.items():
            r = out[name]
            if r["times"] and r["spent"] > budget:
                continue
            start = time.perf_counter()
            block(fn())
            r["times"].append(time.perf_counter() - start)
            r["spent"] += r["times"][-1]
    for r in out.values():
        times = r.pop("times")
        del r["spent"]
        r["steady_s"] = statistics.median(times)
        r["samples"] = len(times)
    return out


def to_numpy(value):
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return np.asarray(value)


# -- the implementations -------------------------------------------------------------------

def torch_cg_sense(kspace, maps, omega, grid, adjoint, toeplitz, iterations):
    """CG on ``(S^H F^H F S) x = S^H F^H y`` with torchkbnufft's Toeplitz normal operator.

    ``kspace`` ``(1, coils, points)``, ``maps`` ``(1, coils, *grid)``; the kernel is computed
    here; the scale makes the operators the orthonormal ones (see the module docstring).
    """
    size = math.prod(grid)
    with torch.no_grad():
        kernel = tkbn.calc_toeplitz_kernel(omega, im_size=grid)
        b = adjoint(kspace, omega, smaps=maps) / math.sqrt(size)
        x = torch.zeros_like(b)
        r = b.clone()
        p = r.clone()
        rr = torch.vdot(r.reshape(-1), r.reshape(-1)).real
        for _ in range(iterations):
            ap = toeplitz(p, kernel, smaps=maps) / size
            alpha = rr / torch.vdot(p.reshape(-1), ap.reshape(-1)).real
            x = x + alpha * p
            r = r - alpha * ap
            rr_new = torch.vdot(r.reshape(-1), r.reshape(-1)).real
            p = r + (rr_new / rr) * p
            rr = rr_new
    return x[0, 0]


def mskjax_cg(eps):
    """A jitted ``(kspace, maps, coords) -> image``: ``recon.cg_sense`` at its default eps,
    else ``solvers.cg`` on ``NufftSense(maps, coords, eps=eps).N`` (the same problem)."""
    takes_coords = "coords" in inspect.signature(recon.cg_sense).parameters
    if eps == 1e-6 and takes_coords:
        return jax.jit(lambda k, m, c: recon.cg_sense(k, m, coords=c,
                                                      max_iter=ITERATIONS).image)

    def run(k, m, c):
        A = linop.NufftSense(m, c, eps=eps)
        return solvers.cg(A.N, A.H(k), max_iter=ITERATIONS).x

    return jax.jit(run)


def finufft_direct(grid, coords, upsampfac):
    """jax-finufft with FINUFFT's ``upsampfac`` set, scaled like mskjax's NUFFT."""
    opts = options.Opts(upsampfac=upsampfac)
    scale = 1 / math.sqrt(math.prod(grid))
    points = tuple(jnp.asarray(coords.reshape(-1, len(grid))[:, a] * (2 * np.pi / n))
                   for a, n in enumerate(grid))
    forward = jax.jit(lambda x, p: nufft2(x, *p, iflag=-1, eps=1e-6, opts=opts) * scale)
    adjoint = jax.jit(lambda y, p: nufft1(grid, y, *p, iflag=1, eps=1e-6, opts=opts) * scale)
    return (lambda x: forward(x, points)), (lambda y: adjoint(y, points))


def run_case(case, repeats, cg_repeats, budget):
    grid, num_coils = case["grid"], case["num_coils"]
    coords, maps, kspace, x = case["coords"], case["maps"], case["kspace"], case["coil_images"]
    size = math.prod(grid)
    trajectory = coords.shape[:-1]
    shape = (num_coils, *grid)

    # mskjax: operators are arguments of the jitted functions (coordinates are not constants)
    A = linop.NUFFT(coords, shape=shape)
    A_low = linop.NUFFT(coords, shape=shape, eps=LOW_EPS)
    forward = jax.jit(lambda op, v: op(v))
    adjoint = jax.jit(lambda op, v: op.H(v))
    both = jax.jit(lambda op, v: op.H(op(v)))
    kernel_of = jax.jit(lambda op: op.N)
    apply_normal = jax.jit(lambda normal, v: normal(v))
    xj, yj = jnp.asarray(x), jnp.asarray(kspace)
    y = kspace

    # torchkbnufft: modules built once (their interpolation tables), outside the timings
    omega = omega_of(coords, grid)
    tk_forward = tkbn.KbNufft(im_size=grid)
    tk_adjoint = tkbn.KbNufftAdjoint(im_size=grid)
    tk_toeplitz = tkbn.ToepNufft()
    xt = torch.from_numpy(x)[None]
    yt = torch.from_numpy(kspace.reshape(1, num_coils, -1))
    root = 1 / math.sqrt(size)

    def tk_fwd():
        with torch.no_grad():
            return (tk_forward(xt, omega) * root).reshape(shape[:1] + trajectory)

    def tk_adj():
        with torch.no_grad():
            return tk_adjoint(yt, omega)[0] * root

    def tk_both():
        with torch.no_grad():
            return tk_adjoint(tk_forward(xt, omega), omega)[0] / size

    with torch.no_grad():
        tk_kernel = tkbn.calc_toeplitz_kernel(omega, im_size=grid)

    def tk_toep():
        with torch.no_grad():
            return tk_toeplitz(xt, tk_kernel)[0] / size

    def tk_kern():
        with torch.no_grad():
            return tkbn.calc_toeplitz_kernel(omega, im_size=grid)

    fast_forward, fast_adjoint = finufft_direct(grid, coords, 1.25)
    low = f"mskjax eps={LOW_EPS:g}"
    rows = {}
    rows["forward"] = time_row({
        "mskjax": lambda: forward(A, xj), low: lambda: forward(A_low, xj),
        "sigpy": lambda: sigpy.nufft(x, coords), "torchkbnufft": tk_fwd,
        "jax-finufft upsampfac=1.25": lambda: fast_forward(xj)}, repeats, budget)
    rows["adjoint"] = time_row({
        "mskjax": lambda: adjoint(A, yj), low: lambda: adjoint(A_low, yj),
        "sigpy": lambda: sigpy.nufft_adjoint(y, coords, oshape=shape),
        "torchkbnufft": tk_adj,
        "jax-finufft upsampfac=1.25": lambda: fast_adjoint(yj.reshape(num_coils, -1))},
        repeats, budget)
    rows["normal fwd+adj"] = time_row({
        "mskjax": lambda: both(A, xj), low: lambda: both(A_low, xj),
        "sigpy": lambda: sigpy.nufft_adjoint(sigpy.nufft(x, coords), coords, oshape=shape),
        "torchkbnufft": tk_both}, repeats, budget)
    rows["Toeplitz kernel"] = time_row({
        "mskjax": lambda: kernel_of(A), "torchkbnufft": tk_kern}, cg_repeats, budget,
        warm=PEERS)
    normal = kernel_of(A)
    rows["normal Toeplitz"] = time_row({
        "mskjax": lambda: apply_normal(normal, xj), "torchkbnufft": tk_toep}, repeats, budget)

    cg_fast, cg_low = mskjax_cg(1e-6), mskjax_cg(LOW_EPS)
    kj, mj, cj = jnp.asarray(kspace), jnp.asarray(maps), jnp.asarray(coords)
    kt = torch.from_numpy(kspace.reshape(1, num_coils, -1))
    mt = torch.from_numpy(maps)[None]
    rows["CG-SENSE"] = time_row({
        "mskjax": lambda: cg_fast(kj, mj, cj), low: lambda: cg_low(kj, mj, cj),
        "sigpy": lambda: sigpy.mri.app.SenseRecon(kspace, maps, coord=coords,
                                                  max_iter=ITERATIONS, show_pbar=False).run(),
        "torchkbnufft": lambda: torch_cg_sense(kt, mt, omega, grid, tk_adjoint, tk_toeplitz,
                                               ITERATIONS)}, cg_repeats, budget, warm=PEERS)

    # agreement: every output against mskjax's (eps 1e-6); the normal rows against the
    # exact composition (mskjax's fwd+adj), the kernels against each other are not compared
    reference = {"forward": rows["forward"]["mskjax"]["output"],
                 "adjoint": rows["adjoint"]["mskjax"]["output"],
                 "normal fwd+adj": rows["normal fwd+adj"]["mskjax"]["output"],
                 "normal Toeplitz": rows["normal fwd+adj"]["mskjax"]["output"],
                 "CG-SENSE": rows["CG-SENSE"]["mskjax"]["output"]}
    data_model = linop.NufftSense(maps, coords)
    for name, row in rows.items():
        for impl, r in row.items():
            output = r.pop("output")
            if name in reference:
                r["relative_difference"] = relative(to_numpy(output), to_numpy(reference[name]))
            if name == "CG-SENSE":
                # how well each result fits the data, measured by one model for all
                fit = np.asarray(data_model(jnp.asarray(to_numpy(output).reshape(grid))))
                r["data_residual"] = relative(fit, kspace)
    for name, row in rows.items():
        base = row["mskjax"]["steady_s"]
        for impl, r in row.items():
            r["time_over_mskjax"] = r["steady_s"] / base
    return rows


def summary(rows):
    """Peer time over mskjax time per row; the normal operator is each one's fastest form."""
    def best(impl):
        times = [rows[r][impl]["steady_s"] for r in ("normal fwd+adj", "normal Toeplitz")
                 if impl in rows[r]]
        return min(times)

    out = {}
    for name in ("forward", "adjoint", "normal", "CG-SENSE"):
        ours = best("mskjax") if name == "normal" else rows[name]["mskjax"]["steady_s"]
        ours_low = (rows["normal fwd+adj"][f"mskjax eps={LOW_EPS:g}"]["steady_s"]
                    if name == "normal" else rows[name][f"mskjax eps={LOW_EPS:g}"]["steady_s"])
        if name == "normal":
            ours_low = min(ours_low, rows["normal Toeplitz"]["mskjax"]["steady_s"])
        out[name] = {}
        for peer in PEERS:
            theirs = best(peer) if name == "normal" else rows[name][peer]["steady_s"]
            out[name][peer] = {"peer_over_mskjax": theirs / ours,
                               f"peer_over_mskjax_eps{LOW_EPS:g}": theirs / ours_low}
    return out


def versions():
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]),
                                 "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=False).stdout.strip()
    except OSError:
        commit = None
    return {"mskjax": mskjax.__version__, "mskjax_commit": commit, "jax": jax.__version__,
            "jax_finufft": getattr(jax_finufft, "__version__", None),
            "sigpy": sigpy.__version__, "numba": numba.__version__, "numpy": np.__version__,
            "torch": torch.__version__, "torchkbnufft": tkbn.__version__}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="2d,3d")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--cg-repeats", type=int, default=2)
    parser.add_argument("--budget", type=float, default=10.0,
                        help="seconds per implementation and row after which it stops "
                             "repeating (once it has one steady-state sample)")
    parser.add_argument("--threads", type=int, default=_threads,
                        help="cores and threads for every library (default: all cores)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    args = parser.parse_args()
    torch.set_num_threads(_threads)
    table = QUICK_CASES if args.quick else CASES
    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in table]
    if unknown:
        parser.error(f"--cases: unknown {unknown}; choose from {sorted(table)}")

    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "cores_used": sorted(os.sched_getaffinity(0)),
                    "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
        "versions": versions(),
        "settings": {"threads": _threads, "omp_num_threads": os.environ["OMP_NUM_THREADS"],
                     "numba_num_threads": numba.config.NUMBA_NUM_THREADS,
                     "torch_num_threads": torch.get_num_threads(),
                     "sigpy_threads": "1 (serial numba kernels, numpy FFT)",
                     "repeats": args.repeats, "cg_repeats": args.cg_repeats,
                     "budget_s": args.budget,
                     "iterations": ITERATIONS, "dtype": "complex64", "quick": args.quick,
                     "mskjax_eps": [1e-6, LOW_EPS],
                     "sigpy_nufft": "oversamp 1.25, width 4 (defaults)",
                     "torchkbnufft_nufft": "grid 2x, numpoints 6, table interpolation "
                                           "(defaults)",
                     "cg_sense_mskjax": ("recon.cg_sense(coords=...)" if "coords" in
                                         inspect.signature(recon.cg_sense).parameters
                                         else "solvers.cg on NufftSense.N")},
        "conventions": {},
        "cases": {},
    }
    print(f"threads {_threads} (cores {sorted(os.sched_getaffinity(0))}); OMP_NUM_THREADS "
          f"{os.environ['OMP_NUM_THREADS']}, torch {torch.get_num_threads()}, numba "
          f"{numba.config.NUMBA_NUM_THREADS}; sigpy runs on one thread")
    print("convention check: relative error against an explicit non-uniform DFT "
          "(forward / adjoint)")
    conventions = check_conventions()
    results["conventions"] = conventions
    for grid, per in conventions.items():
        print("  " + grid + ": " + "; ".join(f"{impl} {r['forward']:.1e} / {r['adjoint']:.1e}"
                                            for impl, r in per.items()))
    low = f"mskjax eps={LOW_EPS:g}"
    matched = {grid: {peer: max(per[low].values()) <= min(per[peer].values()) for peer in PEERS}
               for grid, per in conventions.items()}
    results["matched_accuracy"] = matched
    print(f"  {low} at least as accurate as: " + "; ".join(
        f"{grid}: " + ", ".join(f"{peer} {'yes' if ok else 'NO'}" for peer, ok in m.items())
        for grid, m in matched.items()))
    worst = max(v for per in conventions.values() for r in per.values() for v in r.values())
    if worst > 0.05:
        sys.exit(f"nufft_speed.py: an implementation disagrees with the NUDFT by {worst:.2g}: "
                 "the conventions assumed here are wrong; the timings would not compare equal "
                 "computations")

    header = (f"{'case':<5}{'row':<17}{'implementation':<28}{'first s':>9}{'steady ms':>11}"
              f"{'n':>3}{'x mskjax':>10}{'rel diff':>10}{'data fit':>10}")
    for name in names:
        num_coils, grid, spokes, samples = table[name]
        case = make_case(num_coils, grid, spokes, samples)
        description = (f"{num_coils} coils, {'x'.join(map(str, grid))}, {spokes} spokes of "
                       f"{samples} samples ({spokes * samples} points)")
        print(f"\n{name}: {description}; building and timing ...", flush=True)
        load_before = os.getloadavg()
        rows = run_case(case, args.repeats, args.cg_repeats, args.budget)
        load_after = os.getloadavg()
        ratios = summary(rows)
        results["cases"][name] = {"description": description, "rows": rows, "summary": ratios,
                                  "load_average_before": load_before,
                                  "load_average_after": load_after}
        print(header)
        print("-" * len(header))
        for row, impls in rows.items():
            for impl, r in impls.items():
                diff, fit = r.get("relative_difference"), r.get("data_residual")
                diff = f"{diff:>10.1e}" if diff is not None else f"{'-':>10}"
                fit = f"{fit:>10.2e}" if fit is not None else ""
                print(f"{name:<5}{row:<17}{impl:<28}{r['first_s']:>9.2f}"
                      f"{1e3 * r['steady_s']:>11.1f}{r['samples']:>3}"
                      f"{r['time_over_mskjax']:>9.2f}x{diff}{fit}")
        print(f"{name}: peer time / mskjax time (normal: each one's fastest form; in brackets "
              f"against mskjax at eps={LOW_EPS:g}):")
        for row, per in ratios.items():
            low_key = f"peer_over_mskjax_eps{LOW_EPS:g}"
            print(f"  {row:<10}" + "   ".join(
                f"{peer} {r['peer_over_mskjax']:.2f}x ({r[low_key]:.2f}x)"
                for peer, r in per.items()))
        print(f"{name}: load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
              f"(1 minute; {os.cpu_count()} cores)")

    stem = ("quick_" if args.quick else "") + f"threads{_threads}"
    path = Path(__file__).parent / "results" / "nufft_speed" / f"{stem}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    tmp.replace(path)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
