"""Peak memory of one E2E-VarNet training step against the number of cascades, per remat policy.

The step is the one of ``mskjax train recon --model e2e-varnet``: the loss of
``mskjax.cli._train_recon.make_loss`` (an augmented, freshly undersampled example per slice of
the batch, fastMRI's SSIM loss) under ``mskjax.train.make_train_step`` with the CLI's
optimiser (Adam, gradient clipping at norm 1), jitted with the state donated.

Data: fastMRI knee size, 15 coils x 640 x 368 (``--coils``, ``--rows``, ``--cols``): the first
real axial knee of ``knee_axial_rss`` (``../shared/data``, 320 x 256 root-sum-of-squares)
resized to 640 x 368 (linear interpolation), with a smooth phase, 15 simulated birdcage coils
and complex Gaussian noise at 30 dB; the memory and the time of a step do not depend on the
values. The net: fastMRI's published size (U-Net chans 18, 4 pools; sensitivity U-Net chans 8,
4 pools), ``--cascades`` cascades, batch ``--batch``, 4x equispaced masks with 8 % centre.

Each configuration (cascades, policy) is measured two ways:

(a) ``analysed``: XLA's plan of the compiled step, ``compiled.memory_analysis()``: arguments +
    outputs + temporaries - aliased (the donated state) bytes; cheap, nothing runs.
(b) ``measured``: a fresh subprocess builds the data and the net, loads the compiled step (the
    parent's executable, through JAX's persistent compilation cache in
    ``results/memory/.jax_cache``, removed at the end) and runs 2 steps; on CPU the peak
    resident set (``VmHWM``, reset after the compilation through ``/proc/self/clear_refs`` so
    that the compiler's own peak is not counted; ``compile_vmhwm_bytes`` keeps that one) minus
    the resident set after the imports (``jax.devices()`` called), on a GPU
    ``memory_stats()["peak_bytes_in_use"]`` of the device. Run only when the analysed size is
    under ``--max-analysed-gb`` (20), and killed by a watchdog when its resident set passes
    ``--kill-gb`` (22). Also the times: compilation (the parent's ``compile`` column), the
    first and the second step (``step s``: the second, the steady state; a training step
    is too slow here for a median of many).

Then "the largest configuration that trains here": the published size (12 cascades) at batch
1 under every policy (analysed; measured where it fits), and the largest batch size (doubling
up to ``--max-batch``) whose analysed size under the best policy stays under the limit,
confirmed by a measured subprocess run of 2 steps.

Outputs in ``benchmarks/results/memory/`` (``memory_quick/`` with ``--quick``; ``--out``): ``memory.json`` (settings, machine, versions,
every number), ``memory.png`` (peak GB against cascades, one line per policy, analysed solid
and measured as markers, the 24 GB line); a table on stdout.

``--quick``: 4 coils x 160 x 128, cascades 1 and 2 (measured at 2), small U-Nets (chans 4,
2 pools; sensitivity chans 2, 1 pool), no batch search: a smoke run (a few minutes on 2 busy
CPU cores, most of it XLA's compilation).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # GPU: allocate as needed
# The measured subprocess loads the executable the parent compiled for its analysis.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

POLICIES = ("none", "cascade", "block", "cascade+block")
GIB = 2 ** 30
PUBLISHED = {"chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4}
SMALL = {"chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 1}


# -- shared by the parent and the child ---------------------------------------------------------

def make_kspace(coils: int, rows: int, cols: int, seed: int = 0):
    """Fully sampled multi-coil k-space ``(coils, rows, cols)`` complex64 from a real knee."""
    import numpy as np
    from scipy import ndimage

    from _common import data_folder
    from mskjax import coils as coil_maps
    from mskjax.fourier import fft2c

    images = np.load(data_folder() / "knee_axial_rss" / "knee_axial_rss.npz")["images"]
    image = images[0].astype(np.float64)
    image = ndimage.zoom(image, (rows / image.shape[0], cols / image.shape[1]), order=1)
    image = image[:rows, :cols] / image.max()
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    image = image * np.exp(1j * (0.6 * x + 0.4 * y * y))
    maps = np.asarray(coil_maps.normalize_maps(coil_maps.birdcage_maps((coils, rows, cols))))
    kspace = np.asarray(fft2c(jnp_array(maps * image[None])))
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(np.mean(np.abs(kspace) ** 2) / 10 ** 3.0 / 2)  # 30 dB
    noise = rng.standard_normal(kspace.shape) + 1j * rng.standard_normal(kspace.shape)
    return (kspace + sigma * noise).astype(np.complex64)


def jnp_array(x):
    import jax.numpy as jnp
    import numpy as np

    return jnp.asarray(np.asarray(x, np.complex64))


def build_step(config: dict, kspace_shape: tuple, batch: int):
    """``(jitted step, state, batch_shapes)`` of the ``train recon`` step for an e2e-varnet."""
    import jax
    import jax.numpy as jnp

    from mskjax import train
    from mskjax.cli._learned import build_model
    from mskjax.cli._run import optimizer
    from mskjax.cli._train_recon import make_loss

    net, _ = build_model("e2e-varnet", config, 0, "benchmarks/memory.py")
    graphdef, params, rest = train.split_model(net)
    opt = optimizer(1e-3)
    state = train.init_train_state(params, opt, key=0)
    loss_fn = make_loss("e2e-varnet", graphdef, rest, acceleration=4, center_fraction=0.08,
                        mask="equispaced", augment=True, kspace_shape=(batch, *kspace_shape))
    step = jax.jit(train.make_train_step(loss_fn, opt), donate_argnums=0)
    shapes = {"kspace": jax.ShapeDtypeStruct((batch, *kspace_shape), jnp.complex64)}
    return step, state, shapes


def analyse(config: dict, kspace_shape: tuple, batch: int) -> dict:
    """XLA's memory plan of the compiled step (nothing runs)."""
    import jax

    step, state, shapes = build_step(config, kspace_shape, batch)
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    tick = time.perf_counter()
    compiled = step.lower(abstract, shapes).compile()
    seconds = time.perf_counter() - tick
    m = compiled.memory_analysis()
    total = (m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
             - m.alias_size_in_bytes)
    return {"argument_bytes": m.argument_size_in_bytes, "output_bytes": m.output_size_in_bytes,
            "temp_bytes": m.temp_size_in_bytes, "alias_bytes": m.alias_size_in_bytes,
            "total_bytes": total, "compile_s": seconds}


def _status_kib(field: str, pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child(spec: dict) -> dict:
    """Build, compile and run 2 steps; the peak memory and the times (run in a subprocess)."""
    import jax
    import numpy as np

    device = jax.devices()[0]
    baseline_kib = _status_kib("VmRSS")
    kspace = np.load(spec["kspace_file"])
    data = {"kspace": jax.device_put(np.broadcast_to(kspace, (spec["batch"], *kspace.shape)))}
    step, state, shapes = build_step(spec["config"], kspace.shape, spec["batch"])
    abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    tick = time.perf_counter()
    compiled = step.lower(abstract, shapes).compile()  # the parent's, from the cache
    compile_s = time.perf_counter() - tick
    compile_hwm_kib = _status_kib("VmHWM")
    reset = _reset_peak()
    before_steps_kib = _status_kib("VmRSS")
    times, losses = [], []
    for _ in range(2):
        tick = time.perf_counter()
        state, metrics = compiled(state, data)
        jax.block_until_ready(state)
        times.append(time.perf_counter() - tick)
        losses.append(float(metrics["loss"]))
    out = {"platform": device.platform, "compile_s": compile_s, "step_s": times,
           "losses": losses, "baseline_rss_bytes": baseline_kib * 1024,
           "compile_vmhwm_bytes": compile_hwm_kib * 1024, "peak_reset": reset,
           "before_steps_rss_bytes": before_steps_kib * 1024,
           "vmhwm_bytes": _status_kib("VmHWM") * 1024}
    out["rss_growth_bytes"] = out["vmhwm_bytes"] - out["baseline_rss_bytes"]
    out["step_growth_bytes"] = out["vmhwm_bytes"] - out["before_steps_rss_bytes"]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats:
        out["device_peak_bytes"] = int(stats.get("peak_bytes_in_use", 0))
        out["measured_bytes"] = out["device_peak_bytes"]
        out["measured_by"] = "memory_stats()['peak_bytes_in_use']"
    else:
        out["measured_bytes"] = out["rss_growth_bytes"]
        out["measured_by"] = "VmHWM - VmRSS after imports"
    return out


def _reset_peak() -> bool:
    """Reset ``VmHWM`` to the current resident set (Linux ``clear_refs``), so that the peak
    of the steps is not the peak of the compilation; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# -- the parent ---------------------------------------------------------------------------------

def measure(spec: dict, *, kill_bytes: float, timeout_s: float) -> dict:
    """Run :func:`child` in a subprocess under a resident-set watchdog."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        spec_file = f.name
    proc = subprocess.Popen([sys.executable, __file__, "--child", spec_file],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = {"why": None}

    def watch():
        start = time.monotonic()
        while proc.poll() is None:
            try:
                rss = _status_kib("VmRSS", str(proc.pid)) * 1024
            except OSError:
                break
            if rss > kill_bytes:
                killed["why"] = f"resident set {rss / GIB:.1f} GB over {kill_bytes / GIB:.1f} GB"
                proc.kill()
                break
            if time.monotonic() - start > timeout_s:
                killed["why"] = f"over {timeout_s:.0f} s"
                proc.kill()
                break
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    os.unlink(spec_file)
    if killed["why"]:
        return {"error": "killed: " + killed["why"]}
    if proc.returncode != 0:
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return {"error": f"exit {proc.returncode}: {lines[-1] if lines else ''}"}
    return json.loads(stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    import jax
    import flax
    import optax

    import mskjax

    device = jax.devices()[0]
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = None
    return {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                        "cpus": os.cpu_count(), "memory_bytes": total,
                        "backend": jax.default_backend(), "device": str(device),
                        "load_average": os.getloadavg()},
            "versions": {"python": platform.python_version(), "mskjax": mskjax.__version__,
                         "jax": jax.__version__, "flax": flax.__version__,
                         "optax": optax.__version__}}


def write_atomic(path: Path, write):
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def figure(results: dict, path: Path, limit_gb: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, policy in enumerate(results["settings"]["policies"]):
        rows = [r for r in results["sweep"] if r["policy"] == policy and "analysed" in r]
        color = f"C{i}"
        ax.plot([r["cascades"] for r in rows], [r["analysed"]["total_bytes"] / GIB for r in rows],
                "-", color=color, label=f"{policy} (XLA analysis)")
        done = [r for r in rows if "measured_bytes" in r.get("measured", {})]
        if done:
            ax.plot([r["cascades"] for r in done],
                    [r["measured"]["measured_bytes"] / GIB for r in done], "o", color=color,
                    label=f"{policy} (measured)")
    ax.axhline(limit_gb, color="k", ls="--", lw=1, label=f"{limit_gb:g} GB (this machine)")
    s = results["settings"]
    ax.set_xlabel("cascades")
    ax.set_ylabel("peak memory of a training step (GB)")
    ax.set_title(f"E2E-VarNet training step, {s['coils']} x {s['rows']} x {s['cols']}, "
                 f"batch {s['batch']}", fontsize=10)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    write_atomic(path, lambda p: fig.savefig(p, dpi=120, format="png"))
    plt.close(fig)


def gb(x):
    return f"{x / GIB:7.2f}" if isinstance(x, (int, float)) else f"{'-':>7}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a one-minute smoke run")
    parser.add_argument("--cascades", type=int, nargs="+", default=None)
    parser.add_argument("--measure-cascades", type=int, nargs="+", default=None,
                        help="cascades measured in subprocesses (default: all)")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    parser.add_argument("--coils", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--cols", type=int, default=None)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--max-batch", type=int, default=16,
                        help="the batch search doubles up to this (0: no search)")
    parser.add_argument("--largest-cascades", type=int, default=12,
                        help="cascades of the 'largest configuration' search")
    parser.add_argument("--limit-gb", type=float, default=24.0, help="the machine's memory")
    parser.add_argument("--max-analysed-gb", type=float, default=20.0,
                        help="never run a configuration whose analysed size exceeds this")
    parser.add_argument("--kill-gb", type=float, default=22.0,
                        help="kill a measured run whose resident set exceeds this")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per measured run")
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default results/memory, results/memory_quick)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        spec = json.loads(Path(args.child).read_text())
        if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
            import jax

            jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
        print(json.dumps(child(spec)))
        return

    quick = args.quick
    if args.out is None:
        args.out = HERE / "results" / ("memory_quick" if quick else "memory")
    coils = args.coils or (4 if quick else 15)
    rows = args.rows or (160 if quick else 640)
    cols = args.cols or (128 if quick else 368)
    cascades = args.cascades or ([1, 2] if quick else [1, 2, 4, 8, 12])
    if args.measure_cascades is not None:
        measured = set(args.measure_cascades)
    else:
        measured = {max(cascades)} if quick else set(cascades)
    sizes = SMALL if quick else PUBLISHED
    max_batch = 0 if quick else args.max_batch
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / ".jax_cache"
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(cache)  # for the subprocesses
    import jax

    jax.config.update("jax_compilation_cache_dir", str(cache))

    import numpy as np

    kspace = make_kspace(coils, rows, cols)
    kspace_file = args.out / ".kspace.npy"
    np.save(kspace_file, kspace)
    results = {"settings": {"coils": coils, "rows": rows, "cols": cols, "batch": args.batch,
                            "net": sizes, "cascades": cascades, "policies": args.policies,
                            "measured_cascades": sorted(measured), "quick": quick,
                            "acceleration": 4, "center_fraction": 0.08, "mask": "equispaced",
                            "loss": "mskjax train recon (make_loss + make_train_step), SSIM",
                            "data": "real axial knee (knee_axial_rss[0]) resized, smooth "
                                    "phase, simulated birdcage coils, 30 dB noise",
                            "limit_gb": args.limit_gb, "max_analysed_gb": args.max_analysed_gb,
                            "kill_gb": args.kill_gb},
               **machine_info(), "sweep": [], "largest": {}}
    print(f"{results['machine']['platform']}, {results['machine']['cpus']} CPUs, "
          f"{results['machine']['device']}; jax {results['versions']['jax']}")
    print(f"E2E-VarNet training step, {coils} x {rows} x {cols}, batch {args.batch}, {sizes}")

    def run_one(n, policy, batch, measure_it):
        config = {"num_cascades": n, "remat": policy, **sizes}
        row = {"cascades": n, "policy": policy, "batch": batch}
        tick = time.perf_counter()
        row["analysed"] = analyse(config, kspace.shape, batch)
        row["analysed"]["wall_s"] = time.perf_counter() - tick
        total = row["analysed"]["total_bytes"]
        if not measure_it:
            row["measured"] = {"skipped": "not asked for"}
        elif total > args.max_analysed_gb * GIB:
            row["measured"] = {"skipped": f"analysed {total / GIB:.1f} GB > "
                                          f"{args.max_analysed_gb} GB"}
        else:
            spec = {"config": config, "batch": batch, "kspace_file": str(kspace_file)}
            row["measured"] = measure(spec, kill_bytes=args.kill_gb * GIB,
                                      timeout_s=args.timeout)
        m = row["measured"]
        steps = m.get("step_s", [None, None])
        print(f"{n:4d} {policy:>14} {batch:3d} {gb(total)} {gb(m.get('measured_bytes'))} "
              f"{row['analysed']['compile_s']:8.1f} "
              f"{m['compile_s'] if 'compile_s' in m else float('nan'):8.1f} "
              f"{steps[-1] if steps[-1] else float('nan'):8.2f}  "
              f"{m.get('error', m.get('skipped', ''))}", flush=True)
        return row

    header = (f"{'casc':>4} {'policy':>14} {'bat':>3} {'anal GB':>7} {'meas GB':>7} "
              f"{'compile':>8} {'c(sub)':>8} {'step s':>8}")
    print(header)
    json_path = args.out / "memory.json"

    def save():
        write_atomic(json_path, lambda p: p.write_text(json.dumps(results, indent=1)))

    for n in cascades:
        for policy in args.policies:
            results["sweep"].append(run_one(n, policy, args.batch, n in measured))
            save()

    if not quick:
        largest = results["largest"]
        n = args.largest_cascades
        print(f"\nlargest configuration: {n} cascades, {coils} x {rows} x {cols}")
        print(header)
        at_size = [r for r in results["sweep"] if r["cascades"] == n and r["batch"] == 1]
        if not at_size:
            at_size = [run_one(n, p, 1, True) for p in args.policies]
            results["sweep"].extend(at_size)
        largest["batch1"] = {r["policy"]: {"analysed_bytes": r["analysed"]["total_bytes"],
                                           "measured": r["measured"]} for r in at_size}
        best = min(at_size, key=lambda r: r["analysed"]["total_bytes"])["policy"]
        largest["best_policy"] = best
        fits, batch = None, 2
        while max_batch and batch <= max_batch:
            row = run_one(n, best, batch, False)
            largest.setdefault("batch_search", []).append(row)
            save()
            if row["analysed"]["total_bytes"] > args.max_analysed_gb * GIB:
                break
            fits = batch
            batch *= 2
        if fits:
            row = run_one(n, best, fits, True)
            largest["confirmed"] = row
        save()

    save()
    figure(results, args.out / "memory.png", args.limit_gb)
    kspace_file.unlink(missing_ok=True)
    shutil.rmtree(cache, ignore_errors=True)
    print(f"\nwrote {json_path} and {args.out / 'memory.png'}")


if __name__ == "__main__":
    main()
