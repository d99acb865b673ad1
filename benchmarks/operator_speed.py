"""Speed of the SENSE operator (forward, adjoint, normal) against sigpy and the FFT floor.

For each case, on the same complex64 data in one run: mskjax's jitted ``Sense`` and its
``.H`` and ``.N``, sigpy's ``sigpy.mri.linop.Sense`` with the same maps and mask (CPU, numpy),
and the floor: a jitted batched centred FFT over the coils (the normal operator needs two).
Compilation (first call) and steady state (median of repeats, ``block_until_ready``) are timed
separately. Prints a table and writes ``benchmarks/results/operator_speed.json``.

    python benchmarks/operator_speed.py [--repeats 7] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import sigpy
import sigpy.mri

from mskjax import coils, sampling
from mskjax.fourier import fft2c
from mskjax.linop import Sense

CASES = {
    "brain 8 coils 230x180": (8, 230, 180),
    "knee 15 coils 640x368": (15, 640, 368),
}


def timed(fn, repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def run_case(shape, repeats):
    num_coils, rows, cols = shape
    maps = np.asarray(coils.normalize_maps(coils.birdcage_maps(shape)))
    mask, _ = sampling.equispaced_mask(shape, center_fraction=0.08, acceleration=4, seed=0)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((rows, cols)) + 1j * rng.standard_normal((rows, cols))).astype(
        np.complex64)
    y = np.asarray(Sense(maps, mask=mask)(x))

    op = Sense(maps, mask=mask)
    forward = jax.jit(lambda A, v: A(v))
    adjoint = jax.jit(lambda A, v: A.H(v))
    normal = jax.jit(lambda A, v: A.N(v))
    fft_floor = jax.jit(lambda v: fft2c(v))
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    weights = np.broadcast_to(mask, (rows, cols)).astype(np.float32)
    ref = sigpy.mri.linop.Sense(maps, weights=weights)
    rows_out = {}
    for name, ours, theirs in [
        ("forward", lambda: forward(op, xj), lambda: ref * x),
        ("adjoint", lambda: adjoint(op, yj), lambda: ref.H * y),
        ("normal", lambda: normal(op, xj), lambda: ref.N * x),
    ]:
        compile_s, steady = timed(ours, repeats)
        _, peer = timed(theirs, repeats)
        err = float(np.linalg.norm(np.asarray(ours()) - theirs()) / np.linalg.norm(theirs()))
        rows_out[name] = {"mskjax_compile_s": compile_s, "mskjax_s": steady, "sigpy_s": peer,
                          "sigpy_over_mskjax": peer / steady, "relative_difference": err}
    _, floor = timed(lambda: fft_floor(yj), repeats)
    rows_out["fft_floor_s"] = floor
    rows_out["normal_over_two_ffts"] = rows_out["normal"]["mskjax_s"] / (2 * floor)
    return rows_out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="only the small case")
    args = parser.parse_args()
    cases = dict(list(CASES.items())[:1]) if args.quick else CASES
    results = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "backend": jax.default_backend()},
        "versions": {"jax": jax.__version__, "sigpy": sigpy.__version__, "numpy": np.__version__},
        "settings": {"repeats": args.repeats, "dtype": "complex64", "mask": "equispaced 4x, 8%"},
        "cases": {},
    }
    header = f"{'case':<24}{'op':<9}{'compile s':>10}{'mskjax ms':>11}{'sigpy ms':>10}{'ratio':>8}"
    print(header)
    print("-" * len(header))
    for label, shape in cases.items():
        out = run_case(shape, args.repeats)
        results["cases"][label] = out
        for name in ("forward", "adjoint", "normal"):
            r = out[name]
            print(f"{label:<24}{name:<9}{r['mskjax_compile_s']:>10.3f}{1e3 * r['mskjax_s']:>11.2f}"
                  f"{1e3 * r['sigpy_s']:>10.2f}{r['sigpy_over_mskjax']:>7.1f}x")
        print(f"{label:<24}{'FFT':<9}{'':>10}{1e3 * out['fft_floor_s']:>11.2f}   "
              f"(normal = {out['normal_over_two_ffts']:.2f} x two FFTs)")
    path = Path(__file__).parent / "results" / "operator_speed.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
