"""Throughput against devices and processes, against the ideal line (strong scaling).

Two workloads, each timed in its own process per configuration:

(a) ``train``: one data-parallel training step of the E2E-VarNet with the loss of
    ``mskjax train recon`` (``make_loss`` of ``mskjax/cli/_train_recon.py``: per slice an
    augmented example drawn on the device, a fastMRI 4x equispaced mask, fastMRI's SSIM loss;
    Adam with clipping at norm 1) through ``train.make_train_step`` and
    ``train.data_parallel``. A small network (2 cascades, U-Nets of 8 channels with 2 pools,
    sensitivity U-Net of 4 channels with 2 pools) on random 64-row bands of the fully sampled
    readout axis (``patch_rows``), so that one step takes about a second on one CPU core.
    The global batch is fixed at 4 slices: strong scaling, each of N devices gets 4 / N slices.
(b) ``recon``: CG-SENSE (``lamda`` 0.01, 30 iterations, the simulated sensitivity maps, the
    ``(cols,)`` fastMRI 4x equispaced mask vector) of a stack of 16 slices with
    ``recon.map_slices`` sharded over the N devices: strong scaling too.

Data: the real axial knee images of ``knee_axial_rss`` (``$MSKJAX_DATA`` or
``../shared/data``) with 8 simulated birdcage coils, a smooth simulated phase and complex
Gaussian noise at 30 dB (``mskjax.sim.simulate_kspace``): real anatomy, simulated multi-coil
k-space. The data is made once by this script and handed to every configuration.

Configurations: 1, 2 and 4 forced host CPU devices (each its own subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``); 2 processes x 1 CPU device
(``mskjax.train.initialize_distributed`` on ``jax.distributed``, gloo collectives, both
processes launched by this script with the coordinator on 127.0.0.1 and timeouts); and with
``--platform gpu`` (or ``auto`` finding one) one GPU. The ideal line is the throughput of one
CPU device times the number of devices; speed-up is throughput over that of one CPU device and
parallel efficiency is speed-up over devices. The GPU row is reported beside the CPU rows (its
speed-up is over one CPU device of the same machine).

Timing: the first call (compilation) is reported apart from the steady state, the median of
``--repeats`` calls with ``block_until_ready`` after one untimed warm-up call. The inputs are
placed on the devices before timing (a training step reads a batch already sharded over the
mesh). Throughput is slices per second. Agreement: the first training step's loss and the
CG-SENSE images of every configuration are compared with those of one CPU device.

On a machine with fewer cores than devices the devices share cores (oversubscription): the
output says so, with the load average before and after every configuration, since the CPU may
be shared with other work.

Prints a table and writes ``benchmarks/results/scaling.json`` and ``scaling.png``
(throughput against devices, measured and ideal, one panel per workload).

    python benchmarks/scaling.py                  # full run, about 5 minutes on 2 cores
    python benchmarks/scaling.py --quick          # smoke run, about a minute: tiny sizes,
                                                  # XLA's backend optimisation off
    python benchmarks/scaling.py --devices 1,2 --processes 0 --repeats 3

On a machine with one GPU (offline; the data copied into the checkout first, since only the
checkout travels; mskjax need not be installed there, only jax, flax, optax and matplotlib)::

    mkdir -p .gpu_data/knee_axial_rss && echo /.gpu_data/ >> .git/info/exclude
    cp ../shared/data/knee_axial_rss/knee_axial_rss.npz .gpu_data/knee_axial_rss/
    # then on the GPU machine, in the checkout (carrying .gpu_data):
    PYTHONPATH=. MSKJAX_DATA=.gpu_data PYTHONUNBUFFERED=1 python3 benchmarks/scaling.py \\
        --platform gpu --out "$OUT"
"""

from __future__ import annotations

import os
import sys

# The parent only prepares data and launches the workers: keep it off any accelerator.
if "--worker" not in sys.argv:
    os.environ["JAX_PLATFORMS"] = "cpu"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

SCRIPT = Path(__file__).resolve()
sys.path.insert(0, str(SCRIPT.parent))
sys.path.insert(1, str(SCRIPT.parents[1]))

CG_LAMDA = 0.01
#: --quick compiles with XLA's backend optimisation off (compilation 3x faster, the steady
#: state slower): a smoke run, its timings are not the benchmark's.
QUICK_XLA_FLAGS = "--xla_backend_optimization_level=0"

#: Sizes of the full and the quick run.
SIZES = {
    "full": {"coils": 8, "train_batch": 4, "patch_rows": 64,
             "model": {"num_cascades": 2, "chans": 8, "pools": 2, "sens_chans": 4,
                       "sens_pools": 2},
             "recon_slices": 16, "cg_iterations": 30, "train_repeats": 5, "recon_repeats": 3},
    "quick": {"coils": 4, "train_batch": 4, "patch_rows": 32,
              "model": {"num_cascades": 1, "chans": 4, "pools": 1, "sens_chans": 2,
                        "sens_pools": 1},
              "recon_slices": 4, "cg_iterations": 10, "train_repeats": 2, "recon_repeats": 2},
}


def log(message: str):
    print(message, flush=True)


# --------------------------------------------------------------------------- data

def make_data(path: Path, size: dict, seed: int):
    """Simulated multi-coil k-space of the real knees, written to ``path`` (an ``.npz``):
    ``train_kspace (batch, coils, rows, cols)`` fully sampled, ``recon_kspace`` undersampled and
    ``recon_maps (slices, coils, rows, cols)``, ``recon_mask (cols,)``."""
    import jax

    from _common import data_folder
    from mskjax import sampling
    from mskjax.sim import simulate_kspace

    source = data_folder() / "knee_axial_rss" / "knee_axial_rss.npz"
    images = np.load(source)["images"]
    count = max(size["train_batch"], size["recon_slices"])
    picks = [i % images.shape[0] for i in range(count)]
    kspace, maps = [], []
    for n, i in enumerate(picks):
        sim = simulate_kspace(images[i], jax.random.key(seed + n), num_coils=size["coils"],
                              snr_db=30.0)
        kspace.append(np.asarray(sim.kspace, np.complex64))
        maps.append(np.asarray(sim.maps, np.complex64))
    kspace, maps = np.stack(kspace), np.stack(maps)
    mask, _ = sampling.equispaced_mask(kspace.shape[1:], center_fraction=0.08, acceleration=4,
                                       seed=seed)
    mask = np.asarray(mask).reshape(-1)[-kspace.shape[-1]:].astype(bool)
    slices = size["recon_slices"]
    np.savez(path, train_kspace=kspace[:size["train_batch"]],
             recon_kspace=np.where(mask, kspace[:slices], 0).astype(np.complex64),
             recon_maps=maps[:slices], recon_mask=mask)
    return {"source": str(source), "subjects_used": sorted(set(picks)),
            "kspace_shape": list(kspace.shape[1:]), "mask_sampled_fraction": float(mask.mean()),
            "description": "real axial knee magnitude images (knee_axial_rss) with "
                           f"{size['coils']} simulated birdcage coils, smooth simulated phase, "
                           "complex Gaussian noise at 30 dB (mskjax.sim.simulate_kspace)"}


# --------------------------------------------------------------------------- worker

def timed_calls(call, repeats: int):
    """``(first s, steady median s, all steady s, output of the first call)``: ``call()`` once
    (compilation), once untimed (warm-up), then ``repeats`` timed calls. With several
    processes each call ends with a barrier, so that a time covers every process's share
    (``block_until_ready`` waits for this process's devices only)."""
    import jax

    def wait(out):
        jax.block_until_ready(out)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("mskjax benchmarks/scaling.py call")
        return out

    wait(None)
    start = time.perf_counter()
    first_out = wait(call())
    first = time.perf_counter() - start
    wait(call())
    times = []
    cpu_start, wall_start = cpu_seconds(), time.perf_counter()
    for _ in range(repeats):
        start = time.perf_counter()
        wait(call())
        times.append(time.perf_counter() - start)
    usage = {"cpu_s": cpu_seconds() - cpu_start, "wall_s": time.perf_counter() - wall_start}
    return first, statistics.median(times), times, first_out, usage


def cpu_seconds() -> float:
    """User plus system CPU time of this process (all its threads) so far, in seconds."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def replicated(tree, mesh):
    """``tree`` replicated on every device of ``mesh`` (of one or several processes)."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    from mskjax import train

    if jax.process_count() == 1:
        return train.replicate(tree, mesh)
    sharding = NamedSharding(mesh, PartitionSpec())

    def one(x):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            data = replicated(jax.random.key_data(x), mesh)
            return jax.random.wrap_key_data(data, impl=impl)
        return jax.make_array_from_process_local_data(sharding, np.asarray(x))

    return jax.tree_util.tree_map(one, tree)


def local_rows(array, mesh):
    """This process's block of rows of ``array`` (all of it on one process)."""
    import jax

    n, p = jax.process_count(), jax.process_index()
    per = array.shape[0] // n
    return array[p * per:(p + 1) * per]


def time_training(data, size: dict, devices, seed: int) -> dict:

    from mskjax import train
    from mskjax.cli._learned import build_model
    from mskjax.cli._run import optimizer
    from mskjax.cli._train_recon import make_loss

    kspace = data["train_kspace"]
    net, config = build_model("e2e-varnet", size["model"], seed, "benchmarks/scaling.py")
    graphdef, params, rest = train.split_model(net)
    opt = optimizer(1e-3)
    mesh = train.batch_mesh(devices)
    loss_fn = make_loss("e2e-varnet", graphdef, rest, acceleration=4, center_fraction=0.08,
                        mask="equispaced", augment=True, kspace_shape=kspace.shape,
                        patch_rows=size["patch_rows"])
    step = train.data_parallel(train.make_train_step(loss_fn, opt), mesh=mesh,
                               donate_state=True)
    state = replicated(train.init_train_state(params, opt, key=seed), mesh)
    batch = train.global_batch({"kspace": local_rows(kspace, mesh)}, mesh)
    holder = {"state": state}

    def call():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics

    first, steady, times, metrics, usage = timed_calls(call, size["train_repeats"])
    slices = int(kspace.shape[0])
    return {"slices_per_call": slices, "compile_s": first, "steady_s": steady,
            "steady_all_s": times, "throughput": slices / steady, "usage": usage,
            "first_loss": float(metrics["loss"]), "skipped": int(holder["state"].skipped),
            "model_config": config}


def time_recon(data, size: dict, devices, out_path: Path | None) -> dict:
    import jax

    from mskjax import recon, train

    mask = data["recon_mask"]
    iterations = size["cg_iterations"]
    mesh = train.batch_mesh(devices)
    fn = jax.jit(recon.map_slices(
        lambda k, m: recon.cg_sense(k, m, mask=mask, lamda=CG_LAMDA, max_iter=iterations).image,
        devices=devices))
    k = train.global_batch(local_rows(data["recon_kspace"], mesh), mesh)
    m = train.global_batch(local_rows(data["recon_maps"], mesh), mesh)
    first, steady, times, image, usage = timed_calls(lambda: fn(k, m), size["recon_repeats"])
    if out_path is not None:
        shards = sorted((s for s in image.addressable_shards if s.replica_id == 0),
                        key=lambda s: s.index[0].start or 0)
        local = np.concatenate([np.asarray(s.data) for s in shards])
        np.save(out_path, local)
    slices = int(data["recon_kspace"].shape[0])
    return {"slices_per_call": slices, "compile_s": first, "steady_s": steady,
            "steady_all_s": times, "throughput": slices / steady, "usage": usage,
            "iterations": iterations,
            "finite": bool(np.isfinite(np.asarray(
                image.addressable_shards[0].data)).all())}


def worker(args) -> int:
    if args.num_processes > 1:
        from mskjax import train

        settings = train.distributed_settings(coordinator=args.coordinator,
                                              num_processes=args.num_processes,
                                              process_id=args.process_id)
        train.initialize_distributed(settings, timeout_s=min(120.0, args.timeout))
    import jax

    size = json.loads(args.size)
    data = dict(np.load(args.data))
    devices = jax.devices()
    load_before = os.getloadavg()
    result = {"platform": devices[0].platform, "device_kind": devices[0].device_kind,
              "devices": len(devices), "processes": jax.process_count(),
              "local_devices": jax.local_device_count(),
              "xla_flags": os.environ.get("XLA_FLAGS", "")}
    result["train"] = time_training(data, size, devices, args.seed)
    image_path = None
    if args.images is not None:
        image_path = Path(f"{args.images}.p{jax.process_index()}.npy")
    result["recon"] = time_recon(data, size, devices, image_path)
    result["loadavg_before"] = load_before
    result["loadavg_after"] = os.getloadavg()
    Path(f"{args.result}.p{jax.process_index()}").write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------- parent

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(commands_envs, timeout: float, logs: list[Path]) -> list[int]:
    """Start every ``(command, env)`` at once; wait for all, up to ``timeout`` s in total;
    on a timeout or a failure of one, end the others. Returns the exit codes (-9: ended)."""
    procs = []
    for (command, env), log_path in zip(commands_envs, logs):
        with open(log_path, "w") as f:
            procs.append(subprocess.Popen(command, env=env, stdout=f, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    deadline = time.monotonic() + timeout
    codes = [None] * len(procs)
    try:
        while any(c is None for c in codes):
            for i, p in enumerate(procs):
                if codes[i] is None:
                    codes[i] = p.poll()
            if any(c not in (None, 0) for c in codes) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for i, p in enumerate(procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
                codes[i] = -9
            else:
                codes[i] = p.returncode
    return codes


def run_config(name: str, *, devices: int, processes: int, platform_name: str, size: dict,
               data: Path, tmp: Path, timeout: float, seed: int,
               xla_flags: str | None = None) -> dict:
    """One configuration in fresh subprocesses; the worker's result, or ``{"error": ...}``."""
    result_path = tmp / f"{name}.json"
    images = tmp / f"{name}.images"
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "XLA_FLAGS")}
    env["PYTHONUNBUFFERED"] = "1"
    flags = [] if xla_flags is None else [xla_flags]
    if platform_name == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
        flags.insert(0, f"--xla_force_host_platform_device_count={devices // processes}")
    else:
        env["JAX_PLATFORMS"] = "cuda"
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    base = [sys.executable, str(SCRIPT), "--worker", "--data", str(data), "--result",
            str(result_path), "--size", json.dumps(size), "--seed", str(seed), "--images",
            str(images), "--timeout", str(timeout)]
    if processes > 1:
        coordinator = f"127.0.0.1:{free_port()}"
        commands = [(base + ["--num-processes", str(processes), "--process-id", str(p),
                             "--coordinator", coordinator], env) for p in range(processes)]
    else:
        commands = [(base, env)]
    logs = [tmp / f"{name}.p{p}.log" for p in range(len(commands))]
    start = time.perf_counter()
    codes = launch(commands, timeout, logs)
    wall = time.perf_counter() - start
    parts = [Path(f"{result_path}.p{p}") for p in range(processes)]
    if any(codes) or not all(p.exists() for p in parts):
        tail = logs[0].read_text().strip().splitlines()[-3:] if logs[0].exists() else []
        why = "timed out" if -9 in codes else f"exit codes {codes}"
        return {"error": f"{why}: {' | '.join(tail)}", "wall_s": wall}
    results = [json.loads(p.read_text()) for p in parts]
    result = results[0]  # process 0's times (each call ends with a barrier)
    for key in ("train", "recon"):
        # CPU time of all processes over process 0's wall time of the timed calls: the
        # cores this configuration kept busy.
        cpu = sum(r[key]["usage"]["cpu_s"] for r in results)
        repeats = len(result[key]["steady_all_s"])
        result[key]["usage"] = {"cpu_s": cpu, "wall_s": result[key]["usage"]["wall_s"],
                                "cores_busy": cpu / result[key]["usage"]["wall_s"],
                                "slices_per_cpu_s": result[key]["slices_per_call"] * repeats
                                / cpu}
    result["wall_s"] = wall
    parts = sorted(tmp.glob(f"{name}.images.p*.npy"))
    result["_images"] = np.concatenate([np.load(p) for p in parts]) if parts else None
    return result


def detect_gpu(timeout: float = 120.0) -> bool:
    env = {k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"}
    try:
        out = subprocess.run([sys.executable, "-c",
                              "import jax; print(len(jax.devices('gpu')))"],
                             env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return out.returncode == 0 and out.stdout.strip().isdigit() and int(out.stdout) > 0


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    try:
        found["mskjax_revision"] = subprocess.run(
            ["git", "-C", str(SCRIPT.parents[1]), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        found["mskjax_revision"] = None
    return found


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_atomic(path: Path, data: bytes | str):
    from mskjax.io import atomic_path

    with atomic_path(path) as tmp:
        if isinstance(data, str):
            tmp.write_text(data)
        else:
            tmp.write_bytes(data)


def figure(path: Path, rows: list[dict], workloads: dict, subtitle: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mskjax.io import atomic_path

    fig, axes = plt.subplots(1, len(workloads), figsize=(5.2 * len(workloads), 4.2))
    for ax, (key, title) in zip(np.atleast_1d(axes), workloads.items()):
        cpu = [r for r in rows if r["platform"] == "cpu" and r["processes"] == 1
               and key in r and r[key] is not None]
        base = next((r[key]["throughput"] for r in cpu if r["devices"] == 1), None)
        if cpu:
            xs = [r["devices"] for r in cpu]
            ax.plot(xs, [r[key]["throughput"] for r in cpu], "o-", label="CPU, forced host "
                    "devices (1 process)")
            if base is not None:
                line = np.array(sorted({1, *xs, *(r["devices"] for r in rows
                                                  if r["platform"] == "cpu")}))
                ax.plot(line, base * line, "k--", label="ideal (1 device x devices)")
        for r in rows:
            if r.get(key) is None:
                continue
            if r["platform"] == "cpu" and r["processes"] > 1:
                ax.plot([r["devices"]], [r[key]["throughput"]], "s", ms=9,
                        label=f"CPU, {r['processes']} processes x {r['local_devices']} device "
                              "(gloo)")
            elif r["platform"] != "cpu":
                ax.axhline(r[key]["throughput"], color="tab:green", ls=":",
                           label=f"1 GPU ({r['device_kind']})")
        ax.set_xlabel("devices")
        ax.set_ylabel("slices per second (steady state)")
        ax.set_title(title, fontsize=10)
        ax.set_xticks(sorted({r["devices"] for r in rows if r["platform"] == "cpu"}) or [1])
        cores = os.cpu_count() or 1
        if cores < max((r["devices"] for r in rows), default=1):
            ax.axvline(cores, color="grey", ls=":", lw=1, label=f"{cores} cores")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(subtitle, fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def parse_counts(text: str) -> list[int] | None:
    """``"1,2,4"`` -> ``[1, 2, 4]``; None unless positive integers separated by commas."""
    try:
        counts = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        return None
    if not counts or any(c < 1 for c in counts):
        return None
    return sorted(set(counts))


def parent(args) -> int:
    devices = args.device_counts
    size = dict(SIZES["quick" if args.quick else "full"])
    if args.repeats is not None:
        size["train_repeats"] = size["recon_repeats"] = args.repeats
    need = max(devices + [args.processes])
    for key in ("train_batch", "recon_slices"):
        if size[key] % need:
            size[key] = need * -(-size[key] // need)  # strong scaling needs equal shares
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    use_gpu = args.platform in ("gpu", "auto") and detect_gpu()
    if args.platform == "gpu" and not use_gpu:
        raise SystemExit("scaling.py: error: --platform gpu but JAX finds no GPU here")

    cores = os.cpu_count() or 1
    load_start = os.getloadavg()
    log(f"machine: {platform.machine()}, {cpu_model()}, {cores} cores; "
        f"load average {load_start}")
    oversubscribed = [n for n in devices if n > cores] + (
        [args.processes] if args.processes > cores else [])
    if oversubscribed:
        log(f"note: {', '.join(map(str, sorted(set(oversubscribed))))} devices exceed the "
            f"{cores} cores: those devices share cores (oversubscription)")
    log(f"sizes: {json.dumps(size)}")
    tmp = Path(tempfile.mkdtemp(prefix="mskjax-scaling-"))
    try:
        data_path = tmp / "data.npz"
        start = time.perf_counter()
        data_info = make_data(data_path, size, args.seed)
        log(f"data: {data_info['description']}; made in {time.perf_counter() - start:.1f} s")
        configs = [(f"cpu{n}", n, 1, "cpu") for n in devices]
        if args.processes:
            configs.append((f"cpu{args.processes}x1proc", args.processes, args.processes, "cpu"))
        if use_gpu:
            configs.append(("gpu1", 1, 1, "gpu"))
        rows = []
        from tqdm import tqdm

        for name, n, procs, plat in tqdm(configs, desc="configurations", disable=args.quiet):
            label = (f"{plat} {n} device(s)" if procs == 1 else
                     f"{plat} {procs} processes x {n // procs} device")
            load = os.getloadavg()
            result = run_config(name, devices=n, processes=procs, platform_name=plat,
                                size=size, data=data_path, tmp=tmp, timeout=args.timeout,
                                seed=args.seed, xla_flags=QUICK_XLA_FLAGS if args.quick else None)
            result.update(name=name, label=label, platform=result.get("platform", plat),
                          devices=result.get("devices", n), processes=procs,
                          local_devices=result.get("local_devices", n // procs),
                          loadavg_at_start=load)
            if "error" in result:
                tqdm.write(f"{label}: FAILED ({result['error']})")
                result["train"] = result["recon"] = None
            else:
                tqdm.write(f"{label}: train {result['train']['throughput']:.2f} slices/s, "
                           f"recon {result['recon']['throughput']:.2f} slices/s "
                           f"({result['wall_s']:.0f} s in all)")
            rows.append(result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    # Speed-up and efficiency over one CPU device; agreement with one CPU device.
    base = next((r for r in rows if r["name"] == "cpu1" and "error" not in r), None)
    for r in rows:
        for key in ("train", "recon"):
            if r.get(key) is None or base is None:
                continue
            speedup = r[key]["throughput"] / base[key]["throughput"]
            r[key]["speedup"] = speedup
            r[key]["ideal_throughput"] = base[key]["throughput"] * r["devices"]
            r[key]["efficiency"] = speedup / r["devices"]
        if r.get("train") is not None and base is not None:
            a, b = r["train"]["first_loss"], base["train"]["first_loss"]
            r["train"]["first_loss_rel_diff_vs_1_device"] = abs(a - b) / abs(b)
        ref = None if base is None else base.get("_images")
        images = r.get("_images")
        if r.get("recon") is not None and ref is not None and images is not None:
            r["recon"]["max_rel_diff_vs_1_device"] = float(
                np.abs(images - ref).max() / np.abs(ref).max())
    for r in rows:
        r.pop("_images", None)

    workloads = {"train": f"(a) E2E-VarNet training step, global batch {size['train_batch']}",
                 "recon": f"(b) CG-SENSE of {size['recon_slices']} slices "
                          f"({size['cg_iterations']} iterations), map_slices"}
    lines = ["", f"{'configuration':<32} {'workload':<6} {'compile s':>9} {'steady s':>9} "
             f"{'slices/s':>9} {'ideal':>8} {'speed-up':>8} {'eff.':>6} {'cores':>5} {'/CPU-s':>6} "
             f"{'agreement':>10}"]
    for r in rows:
        for key in workloads:
            m = r.get(key)
            if m is None:
                lines.append(f"{r['label']:<32} {key:<6} failed: {r.get('error', '')}")
                continue
            agree = m.get("first_loss_rel_diff_vs_1_device", m.get("max_rel_diff_vs_1_device"))
            lines.append(
                f"{r['label']:<32} {key:<6} {m['compile_s']:9.2f} {m['steady_s']:9.3f} "
                f"{m['throughput']:9.2f} {m.get('ideal_throughput', float('nan')):8.2f} "
                f"{m.get('speedup', float('nan')):8.2f} {m.get('efficiency', float('nan')):6.2f} "
                f"{m['usage']['cores_busy']:5.2f} {m['usage']['slices_per_cpu_s']:6.2f} "
                f"{'' if agree is None else f'{agree:10.1e}'}")
    lines.append("")
    lines.append("strong scaling: fixed global batch / stack, split over the devices; ideal = "
                 "1 CPU device x devices; eff. = speed-up / devices; cores = CPU time of all "
                 "the configuration's processes over the wall time of the timed calls; "
                 "/CPU-s = slices per CPU-second (the work's cost, less sensitive to load); "
                 "agreement = relative difference to 1 CPU device (first training loss; "
                 "CG-SENSE images, max abs over max abs)")
    if args.quick:
        lines.append(f"--quick: tiny sizes compiled with {QUICK_XLA_FLAGS}: a smoke run, not "
                     "a measurement")
    if oversubscribed:
        lines.append(f"{cores} cores: configurations with more devices than cores "
                     "oversubscribe the CPU")
    lines.append(f"load average at the end {os.getloadavg()}")
    text = "\n".join(lines)
    log(text)
    report = {
        "benchmark": "scaling",
        "scaling": "strong (fixed global batch of the training step, fixed stack of slices)",
        "machine": {"machine": platform.machine(), "cpu": cpu_model(), "cores": cores,
                    "system": platform.platform(), "oversubscribed_device_counts":
                    sorted(set(oversubscribed)), "loadavg_start": load_start,
                    "loadavg_end": os.getloadavg()},
        "versions": versions(),
        "settings": {"quick": args.quick, "devices": devices, "processes": args.processes,
                     "platform": "gpu" if use_gpu else "cpu", "seed": args.seed,
                     "timeout_s": args.timeout, "sizes": size, "cg_lamda": CG_LAMDA,
                     "extra_xla_flags": QUICK_XLA_FLAGS if args.quick else None,
                     "acceleration": 4, "center_fraction": 0.08, "mask": "equispaced",
                     "augment": True, "distributed": "jax.distributed via "
                     "mskjax.train.initialize_distributed, gloo CPU collectives, 127.0.0.1"},
        "data": data_info,
        "workloads": workloads,
        "results": rows,
    }
    write_atomic(out / "scaling.json", json.dumps(report, indent=2) + "\n")
    write_atomic(out / "scaling.txt", text + "\n")
    figure(out / "scaling.png", rows, workloads,
           f"strong scaling on {cpu_model()} ({cores} cores), load average "
           f"{load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
           + (" (--quick: not a measurement)" if args.quick else ""))
    log(f"wrote {out / 'scaling.json'}, {out / 'scaling.txt'}, {out / 'scaling.png'}")
    return 0 if all("error" not in r for r in rows) else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a ~1-minute smoke run")
    parser.add_argument("--devices", default="1,2,4",
                        help="forced host CPU device counts, one subprocess each (default 1,2,4)")
    parser.add_argument("--processes", type=int, default=2,
                        help="processes x 1 CPU device on jax.distributed (0: skip; default 2)")
    parser.add_argument("--platform", choices=("cpu", "gpu", "auto"), default="auto",
                        help="gpu: also time one GPU; auto: when JAX finds one (default)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed calls per workload (default 5 train, 3 recon; quick 2)")
    parser.add_argument("--timeout", type=float, default=600.0,
                        help="seconds allowed per configuration (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(SCRIPT.parent / "results"),
                        help="folder for scaling.json, scaling.txt, scaling.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # The worker's own options (one configuration, in its own process).
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--images", help=argparse.SUPPRESS)
    parser.add_argument("--num-processes", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--process-id", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--coordinator", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error(f"--timeout must be positive, got {args.timeout}")
    if not args.worker:
        args.device_counts = parse_counts(args.devices)
        if args.device_counts is None:
            parser.error(f"--devices takes positive integers separated by commas, got "
                         f"{args.devices!r}")
        if args.processes < 0 or args.processes == 1:
            parser.error(f"--processes takes 0 (skip) or a count >= 2, got {args.processes}")
        if args.repeats is not None and args.repeats < 1:
            parser.error(f"--repeats must be >= 1, got {args.repeats}")
    return worker(args) if args.worker else parent(args)


if __name__ == "__main__":
    sys.exit(main())
