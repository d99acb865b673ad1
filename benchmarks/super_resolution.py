"""Super-resolution of thick-slice knee scans: DeepResolve against tricubic interpolation.

Data (two sets, each with a slice axis, thin slices as the ground truth):

- ``real``: the two 3D knee volumes of ``knee3d_fair/knee3D.mat`` (``dataT``, ``dataR``,
  ``(128, 64, 128)`` uint8, read with ``scipy.io.loadmat`` by :func:`load_knee3d`, divided by
  255). The 64-voxel axis 1 is left-right, so sagittal slices are ``volume[:, k, :]``: the slice
  axis is **1**. Trained on ``dataT``, evaluated on ``dataR`` (held out; the two are FAIR's
  registration pair, two scans of a knee, so the held-out volume is another scan, not
  necessarily another person).
- ``sim``: simulated knees, ``sim.knee_phantom(key(seed), shape=(48, 96, 96),
  voxel_size=1.5)`` rendered by ``sim.render(contrast="pd_fs", partial_volume=2, snr=40)``
  (fat-suppressed PD FSE, sub-voxel partial volume, Rician noise), divided by 0.5. Slice axis
  **0** (left-right: sagittal slices, as in the real set). Training seeds 0-3, held-out seeds
  100-101 (other knees).

At each factor (2, 3, 4) the slice axis is cropped to a multiple of the factor (its first
``n - n % factor`` slices: 64 -> 63 for the real set at 3x; 48 is divisible by all three);
the thick-slice input is ``sim.thick_slice(gt, factor, axis)`` (ideal k-space truncation, no
slice profile, intensities kept), and on the thin grid:

- ``sinc``: the kept k-space zero-padded back to the thin grid (ideal band-limited
  interpolation of the thick slices),
- ``tricubic``: ``recon.tricubic_upsample(thick, factor, axis)`` (cubic B-spline, scipy's
  ``zoom(order=3, grid_mode=True, mode="reflect")``),
- ``deepresolve``: ``nets.DeepResolve`` (``--depth`` layers of ``--features`` filters; the
  paper used 20 x 64) applied to the tricubic volume, one net per factor and data set, trained
  on random ``--patch``**3 patches of the training volume(s) (tricubic input -> thin target;
  a patch darker than half the volume's mean is drawn again, up to 20 times, random flips),
  batch ``--batch``, Adam ``--lr`` with cosine decay, mean absolute error, ``--steps`` steps, the
  last layer started at zero (so training starts from tricubic). Evaluated on the whole
  held-out volume(s) at once.

Scores against the thin-slice ground truth: PSNR (``metrics.psnr``, peak = the ground truth's
maximum over the volume) and SSIM (``metrics.ssim``, fastMRI's slice-wise 2D SSIM, 7 x 7
window, on the 2D planes that contain the slice axis, where the thick slices show), averaged
over held-out volumes. Writes ``benchmarks/results/super_resolution/results.json``,
``table.txt`` and ``figure.png`` (ground truth, DeepResolve, tricubic on one held-out plane
across the slice axis at each factor).

    python benchmarks/super_resolution.py [--steps 1000] [--factors 2,3,4] [--sets real,sim]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy
import scipy.io
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import data_folder  # noqa: E402

import mskjax  # noqa: E402
from mskjax import metrics, nets, recon, sim, train  # noqa: E402
from mskjax.fourier import fftnc, ifftnc  # noqa: E402

ROOT = Path(__file__).resolve().parent
SLICE_AXIS = {"real": 1, "sim": 0}
SIM_SHAPE, SIM_VOXEL, SIM_SCALE = (48, 96, 96), 1.5, 0.5
SIM_TRAIN, SIM_TEST = (0, 1, 2, 3), (100, 101)


# ------------------------------------------------------------------------------------- data

def load_knee3d(path: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """The two 3D knee volumes of FAIR's ``knee3D.mat`` as float32 in ``[0, 1]`` (uint8 / 255).

    Args:
        path: the ``.mat`` file; default ``<data>/knee3d_fair/knee3D.mat`` (``$MSKJAX_DATA``
            or ``../shared/data``).

    Returns:
        ``{"dataT": (128, 64, 128), "dataR": (128, 64, 128)}``; axis 1 (64 voxels) is
        left-right: sagittal slices are ``volume[:, k, :]``.
    """
    path = Path(path) if path is not None else data_folder() / "knee3d_fair" / "knee3D.mat"
    try:
        mat = scipy.io.loadmat(path)
    except (OSError, ValueError) as err:
        raise ValueError(f"load_knee3d: cannot read {path}: {err}") from None
    out = {}
    for name in ("dataT", "dataR"):
        if name not in mat or mat[name].ndim != 3:
            raise ValueError(f"load_knee3d: {path} has no 3D array {name!r}")
        out[name] = (mat[name].astype(np.float32) / 255.0)
    return out


def simulated_knee(seed: int) -> np.ndarray:
    """One simulated knee (module docstring), float32, ``SIM_SHAPE``."""
    phantom = sim.knee_phantom(jax.random.key(seed), shape=SIM_SHAPE, voxel_size=SIM_VOXEL)
    image = sim.render(phantom, contrast="pd_fs", partial_volume=2,
                       key=jax.random.key(10_000 + seed), snr=40.0)
    return np.asarray(image, np.float32) / SIM_SCALE


def crop(volume: np.ndarray, factor: int, axis: int) -> np.ndarray:
    n = volume.shape[axis]
    return np.take(volume, np.arange(n - n % factor), axis=axis)


def sinc_interpolation(gt: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """The thick slices' k-space zero-padded to the thin grid: the ground truth low-passed
    to the kept band (real part: the Nyquist sample split, as ``thick_slice`` does)."""
    n = gt.shape[axis]
    m = n // factor
    keep = np.zeros(n, bool)
    keep[n // 2 - m // 2: n // 2 - m // 2 + m] = True
    shape = [1] * gt.ndim
    shape[axis] = n
    k = fftnc(jnp.asarray(gt), axes=axis) * jnp.asarray(keep.reshape(shape))
    return np.asarray(ifftnc(k, axes=axis).real, np.float32)


def inputs(gt: np.ndarray, factor: int, axis: int) -> dict[str, np.ndarray]:
    thick = sim.thick_slice(jnp.asarray(gt), factor=factor, axis=axis)
    return {"thick": np.asarray(thick),
            "tricubic": np.asarray(recon.tricubic_upsample(thick, factor=factor, axis=axis)),
            "sinc": sinc_interpolation(gt, factor, axis)}


# ------------------------------------------------------------------------------- training

def patches(pairs, rng, *, size, batch):
    """``batch`` random ``size``**3 patches (input, target) from random volumes of
    ``pairs``, each with random flips along every axis."""
    xs, ys = [], []
    for _ in range(batch):
        x, y = pairs[rng.integers(len(pairs))]
        for _ in range(20):  # mostly inside the knee: a patch at least half as bright as
            corner = [rng.integers(0, n - size + 1) for n in x.shape]  # the volume on average
            window = tuple(slice(c, c + size) for c in corner)
            px, py = x[window], y[window]
            if py.mean() >= 0.5 * y.mean():
                break
        for a in range(3):
            if rng.random() < 0.5:
                px, py = np.flip(px, a), np.flip(py, a)
        xs.append(px)
        ys.append(py)
    return np.stack(xs)[..., None], np.stack(ys)[..., None]


def train_deepresolve(pairs, args, seed):
    """One DeepResolve trained on ``pairs`` of (tricubic, ground truth) volumes.

    The volumes are scaled by ``1 / scale`` (``scale``: the standard deviation of the
    training ground truth) inside: at the data's own scale (a few tenths) Adam's steps of
    ``lr`` on the biases soon switch every ReLU of a layer off, and the net stays at the
    tricubic input. Returns ``(apply, budget)``, ``apply(volume) -> volume`` at the data's
    scale."""
    scale = float(np.std(np.concatenate([y.ravel() for _, y in pairs])))
    pairs = [(x / scale, y / scale) for x, y in pairs]
    model = nets.DeepResolve(depth=args.depth, features=args.features, rngs=nnx.Rngs(seed))
    model.kernels[-1][...] = jnp.zeros_like(model.kernels[-1][...])
    graphdef, params, rest = train.split_model(model)

    def loss_fn(p, batch, key):
        pred = train.merge_model(graphdef, p, rest)(batch["x"])
        return jnp.mean(jnp.abs(pred - batch["y"])), {}

    schedule = optax.cosine_decay_schedule(args.lr, args.steps, alpha=0.05)
    optimizer = optax.adam(schedule)
    state = train.init_train_state(params, optimizer, key=seed)
    step = jax.jit(train.make_train_step(loss_fn, optimizer), donate_argnums=0)
    rng = np.random.default_rng(seed)
    losses = []
    start = time.perf_counter()
    compile_s = None
    for s in range(args.steps):
        x, y = patches(pairs, rng, size=args.patch, batch=args.batch)
        state, out = step(state, {"x": jnp.asarray(x), "y": jnp.asarray(y)})
        if s == 0:
            jax.block_until_ready(state)
            compile_s = time.perf_counter() - start
            start = time.perf_counter()
        keep = (s + 1) % 25 == 0 or s == 0 or s == args.steps - 1
        losses.append(float(out["loss"]) if keep else None)
        if (s + 1) % 50 == 0:
            print(f"  step {s + 1}: loss {losses[-1]:.3e}, {time.perf_counter() - start:.0f} s",
                  flush=True)
    jax.block_until_ready(state)
    train_s = time.perf_counter() - start
    net = train.merge_model(graphdef, state.params, rest)
    apply = jax.jit(lambda v: net(v[None, ..., None] / scale)[0, ..., 0] * scale)
    logged = [(i + 1, v) for i, v in enumerate(losses) if v is not None]
    return apply, {"compile_s": compile_s, "train_s": train_s, "scale": scale,
                   "loss_first": logged[0][1], "loss_last": logged[-1][1], "loss_log": logged}


# ----------------------------------------------------------------------------- evaluation

def scores(gt: np.ndarray, pred: np.ndarray, axis: int) -> dict[str, float]:
    """PSNR over the volume; SSIM slice-wise on the planes containing the slice axis."""
    other = 0 if axis != 0 else 1  # planes indexed by another axis contain the slice axis
    g, p = np.moveaxis(gt, other, 0), np.moveaxis(pred, other, 0)
    return {"psnr": float(metrics.psnr(jnp.asarray(gt), jnp.asarray(pred))),
            "ssim": float(metrics.ssim(jnp.asarray(g), jnp.asarray(p)))}


def run_set(name, train_vols, test_vols, args):
    axis = SLICE_AXIS[name]
    out, shown = {}, {}
    for factor in args.factors:
        print(f"[{name}] factor {factor}: preparing", flush=True)
        train_gt = [crop(v, factor, axis) for v in train_vols]
        test_gt = [crop(v, factor, axis) for v in test_vols]
        pairs = [(inputs(g, factor, axis)["tricubic"], g) for g in train_gt]
        apply, budget = train_deepresolve(pairs, args, seed=args.seed + factor)
        print(f"[{name}] factor {factor}: trained {args.steps} steps in "
              f"{budget['train_s']:.0f} s (+{budget['compile_s']:.0f} s compile), loss "
              f"{budget['loss_first']:.2e} -> {budget['loss_last']:.2e}", flush=True)
        per_method = {m: [] for m in ("sinc", "tricubic", "deepresolve")}
        for i, gt in enumerate(test_gt):
            ins = inputs(gt, factor, axis)
            preds = {"sinc": ins["sinc"], "tricubic": ins["tricubic"],
                     "deepresolve": np.asarray(apply(jnp.asarray(ins["tricubic"])))}
            for m, p in preds.items():
                per_method[m].append(scores(gt, p, axis))
            if i == 0:
                shown[factor] = {"gt": gt, **preds}
        out[factor] = {"budget": budget,
                       "scores": {m: {k: float(np.mean([s[k] for s in v])) for k in ("psnr",
                                                                                     "ssim")}
                                  for m, v in per_method.items()},
                       "per_volume": per_method}
        sc = out[factor]["scores"]
        print(f"[{name}] factor {factor}: " + ", ".join(
            f"{m} {sc[m]['psnr']:.2f} dB / {sc[m]['ssim']:.4f}" for m in sc), flush=True)
    return out, shown


def table(results) -> str:
    lines = []
    for name, res in results.items():
        lines.append(f"{name} (slice axis {SLICE_AXIS[name]}): PSNR dB / SSIM on held-out data")
        lines.append(f"{'factor':>6} {'sinc':>17} {'tricubic':>17} {'deepresolve':>17} "
                     f"{'gain PSNR':>10} {'gain SSIM':>10} {'train s':>8}")
        for factor, r in res.items():
            s = r["scores"]
            cells = [f"{s[m]['psnr']:7.2f} / {s[m]['ssim']:.4f}"
                     for m in ("sinc", "tricubic", "deepresolve")]
            gain_p = s["deepresolve"]["psnr"] - s["tricubic"]["psnr"]
            gain_s = s["deepresolve"]["ssim"] - s["tricubic"]["ssim"]
            lines.append(f"{factor:>6} " + " ".join(f"{c:>17}" for c in cells)
                         + f" {gain_p:>+10.2f} {gain_s:>+10.4f} {r['budget']['train_s']:>8.0f}")
        lines.append("")
    return "\n".join(lines)


def figure(shown_by_set, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ("gt", "deepresolve", "tricubic")
    titles = {"gt": "ground truth", "deepresolve": "DeepResolve", "tricubic": "tricubic"}
    rows = [(name, f) for name, shown in shown_by_set.items() for f in shown]
    fig, axes = plt.subplots(len(rows), 3, figsize=(9, 2.6 * len(rows)), squeeze=False)
    for r, (name, factor) in enumerate(rows):
        shown = shown_by_set[name][factor]
        axis = SLICE_AXIS[name]
        # a plane across the slice axis: real (x, slice, z) -> plane z = middle, slice axis
        # horizontal; sim (slice, y, z) -> plane y = middle, slice axis vertical
        if name == "real":
            cut = lambda v: v[:, :, v.shape[2] // 2]  # noqa: E731
        else:
            cut = lambda v: v[:, v.shape[1] // 2, :]  # noqa: E731
        vmax = float(np.percentile(cut(shown["gt"]), 99.5))
        for c, method in enumerate(columns):
            ax = axes[r, c]
            ax.imshow(cut(shown[method]), cmap="gray", vmin=0, vmax=vmax, aspect="equal")
            ax.set_xticks([])
            ax.set_yticks([])
            label = titles[method]
            if method != "gt":
                s = scores(shown["gt"], shown[method], axis)
                label += f"\n{s['psnr']:.2f} dB, SSIM {s['ssim']:.3f}"
            ax.set_title(label, fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{name} {factor}x", fontsize=9)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--factors", default="2,3,4")
    parser.add_argument("--sets", default="real,sim")
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0,
                        help="the net of factor f is initialised and trained with seed + f")
    parser.add_argument("--out", default=str(ROOT / "results" / "super_resolution"))
    args = parser.parse_args(argv)
    args.factors = [int(f) for f in args.factors.split(",")]
    sets = args.sets.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    total = time.perf_counter()

    results, shown = {}, {}
    if "real" in sets:
        knee = load_knee3d()
        results["real"], shown["real"] = run_set("real", [knee["dataT"]], [knee["dataR"]],
                                                 args)
    if "sim" in sets:
        start = time.perf_counter()
        train_vols = [simulated_knee(s) for s in SIM_TRAIN]
        test_vols = [simulated_knee(s) for s in SIM_TEST]
        print(f"[sim] {len(train_vols) + len(test_vols)} knees simulated in "
              f"{time.perf_counter() - start:.0f} s", flush=True)
        results["sim"], shown["sim"] = run_set("sim", train_vols, test_vols, args)

    text = table(results)
    print(text)
    report = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpu_count": os.cpu_count(), "backend": jax.default_backend(),
                    "devices": [str(d) for d in jax.devices()]},
        "versions": {"mskjax": getattr(mskjax, "__version__", "dev"), "jax": jax.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__,
                     "optax": optax.__version__, "python": platform.python_version()},
        "settings": {"steps": args.steps, "depth": args.depth, "features": args.features,
                     "patch": args.patch, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                     "schedule": "cosine decay to 5 %", "loss": "mean absolute error (l1)",
                     "one_net_per": "factor and data set", "last_layer_init": "zeros",
                     "thick_slice": "ideal k-space truncation, no slice profile",
                     "slice_axis": SLICE_AXIS, "factors": args.factors,
                     "crop": "slice axis cut to its first n - n % factor slices",
                     "real": {"train": "dataT", "test": "dataR", "scale": "uint8 / 255"},
                     "sim": {"shape": SIM_SHAPE, "voxel_size_mm": SIM_VOXEL,
                             "contrast": "pd_fs", "partial_volume": 2, "snr": 40.0,
                             "scale": f"/ {SIM_SCALE}", "train_seeds": SIM_TRAIN,
                             "test_seeds": SIM_TEST},
                     "ssim": "fastMRI slice-wise 2D SSIM on planes containing the slice axis",
                     "psnr": "peak = ground-truth maximum over the volume"},
        "results": {name: {str(f): r for f, r in res.items()} for name, res in results.items()},
        "total_s": time.perf_counter() - total,
    }
    for path, content in ((out / "results.json", json.dumps(report, indent=1)),
                          (out / "table.txt", text)):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, path)
    figure(shown, out / "figure.png")
    print(f"wrote {out} in {report['total_s']:.0f} s")


if __name__ == "__main__":
    main()
