"""Speed of the E2E-VarNet: mskjax (JAX/XLA) against fastMRI's PyTorch VarNet, same weights.

Configurations (``--configs``):

- ``published``: 15 coils, 640 x 368, 12 cascades, U-Net chans 18 with 4 pools, sensitivity
  U-Net chans 8 with 4 pools (the fastMRI knee model's size);
- ``small``: 8 coils, 320 x 256, 4 cascades, chans 8 with 3 pools, sensitivity chans 4 with 3
  pools.

Both frameworks run the same weights (a freshly initialised ``fastmri.models.VarNet``, copied
into mskjax with ``mskjax.nets.load_fastmri(model.state_dict())``) on the same input: a
simulated knee slice (``mskjax.sim.knee_section`` with birdcage coils at 30 dB) under a fastMRI
equispaced 4x mask (8 % centre). One example, no batch (torch: a batch of one).

Modes:

- ``inference``: k-space and mask to the root-sum-of-squares image (torch under ``no_grad``);
- ``training step``: forward, fastMRI's SSIM loss against the fully sampled RSS image
  (``data_range`` its maximum), backward, Adam update (learning rate 1e-3); mskjax as one
  jitted ``value_and_grad`` + ``optax.adam`` step, torch as ``loss.backward()`` and
  ``torch.optim.Adam.step()``.

Timing: the first call (XLA's compilation; torch's first call) is reported apart from the
steady state, the median of ``--repeats`` calls with ``block_until_ready``. The two frameworks
are timed interleaved (ours, theirs, ours, theirs ...), so that load from other processes on a
shared machine falls on both alike; the ratio torch / mskjax comes from the same run. The
machine's load average is printed before and after: on a busy machine PyTorch's thread pool
suffers more than XLA's, so ratios measured under load favour mskjax.

Threads: PyTorch runs ``torch.set_num_threads(os.cpu_count())``, XLA its default pool.
PyTorch's OpenMP threads busy-wait between operations by default; on a machine shared with
other processes that makes PyTorch 5 to 10 times slower (measured here: the small VarNet's
inference 4.9 s against 0.8 s), so this script sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is
set already (``OMP_WAIT_POLICY=ACTIVE python benchmarks/varnet_speed.py`` for the default
behaviour, which is faster on an idle machine).

Agreement, in the same run: the inference outputs (max |mskjax - torch| / max |torch|), the
first training step's losses and gradients (relative L2 difference over all parameters, and the
largest per-tensor relative difference).

Peak memory: each framework, configuration and mode runs once more in a fresh subprocess (for
the configurations in ``--separate-training``, the training subprocesses above serve); after
building the model and the data (for mskjax: compiling), the peak resident set size is reset
(``/proc/self/clear_refs``) and the growth of ``VmHWM`` over the resident size by the end of
the calls is reported (the larger of two calls for inference; the training steps). A
torch training step's growth includes Adam's two moments (allocated by its first step; about
8 bytes per parameter), which ``optax.adam``'s ``init`` allocates before the measurement. For mskjax XLA's own plan is also given (``compiled.memory_analysis()``:
temporaries + outputs). ``--no-memory`` skips this.

``--layers`` prints the layer-by-layer table: every convolution shape of the fastMRI U-Net at
320 x 320 (chans 18, 4 pools) and of the E2E-VarNet (``--layer-sets``: ``unet320``,
``varnet``: the cascade U-Net at 640 x 368, ``sens``: the sensitivity U-Net on 15 coils), forward
and gradient (input and kernel, for a given output cotangent) of XLA's default
differentiation of ``lax.conv_general_dilated``, of ``mskjax.nets.conv`` (its custom kernel
gradient) and of PyTorch (``conv2d`` and ``aten.convolution_backward``); then the transposed
convolution, average pooling and the whole U-Net (forward and gradient of the mean absolute
output) with XLA's and mskjax's kernel gradients against ``fastmri.models.Unet``.

``--quick``: the small configuration, 3 repeats, no subprocess memory runs.

    python benchmarks/varnet_speed.py [--quick] [--layers] [--configs small,published]
        [--repeats 5] [--train-repeats 3] [--json PATH]
"""

from __future__ import annotations

import os

if "OMP_WAIT_POLICY" not in os.environ:  # before torch: see "Threads" in the docstring
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from flax import nnx

import fastmri
import fastmri.models
from mskjax import losses, nets, sampling
from mskjax.coils import rss
from mskjax.fourier import ifft2c
from mskjax.nets import _conv
from mskjax.sim import knee_section, simulate_kspace

CONFIGS = {
    "published": dict(coils=15, shape=(640, 368), num_cascades=12, chans=18, pools=4,
                      sens_chans=8, sens_pools=4),
    "small": dict(coils=8, shape=(320, 256), num_cascades=4, chans=8, pools=3,
                  sens_chans=4, sens_pools=3),
}
LEARNING_RATE = 1e-3


# -- timing --------------------------------------------------------------------------------

def load_average():
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def interleaved(calls, repeats):
    """``{name: seconds}`` medians (and minima) of calls timed round-robin, after one call each
    whose time is reported as ``first``."""
    first = {}
    for name, fn in calls.items():
        start = time.perf_counter()
        jax.block_until_ready(fn())
        first[name] = time.perf_counter() - start
    times = {name: [] for name in calls}
    for _ in range(repeats):
        for name, fn in calls.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: {"first_s": first[name], "median_s": statistics.median(t), "min_s": min(t)}
            for name, t in times.items()}


# -- the VarNet case ---------------------------------------------------------------------------

def make_case(config):
    """k-space (coils, rows, cols) complex64, mask (cols,) bool, target RSS (rows, cols)."""
    rows, cols = config["shape"]
    image = np.asarray(knee_section((rows, cols)))
    full = np.asarray(simulate_kspace(image, jax.random.key(0), num_coils=config["coils"],
                                      snr_db=30.0).kspace).astype(np.complex64)
    mask, _ = sampling.equispaced_mask(full.shape, center_fraction=0.08, acceleration=4, seed=0)
    kspace = np.where(mask, full, 0).astype(np.complex64)
    target = np.asarray(rss(ifft2c(jnp.asarray(full)), axis=0)).astype(np.float32)
    return kspace, np.asarray(mask, bool), target


def torch_model(config):
    torch.manual_seed(0)
    return fastmri.models.VarNet(num_cascades=config["num_cascades"], chans=config["chans"],
                                 pools=config["pools"], sens_chans=config["sens_chans"],
                                 sens_pools=config["sens_pools"])


def torch_inputs(kspace, mask, target):
    k = torch.from_numpy(np.stack([kspace.real, kspace.imag], axis=-1)[None].copy())
    m = torch.from_numpy(mask.reshape(1, 1, 1, -1, 1).copy())
    t = torch.from_numpy(target[None].copy())
    return k, m, t


class Torch:
    """fastMRI's VarNet: inference and an Adam training step."""

    def __init__(self, model, kspace, mask, target):
        self.model = model
        self.k, self.m, self.t = torch_inputs(kspace, mask, target)
        self.data_range = self.t.amax().reshape(1)
        self.loss_fn = fastmri.SSIMLoss()
        self.optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)

    def infer(self):
        self.model.eval()
        with torch.no_grad():
            return self.model(self.k, self.m)

    def loss(self):
        out = self.model(self.k, self.m)
        return self.loss_fn(out[:, None], self.t[:, None], data_range=self.data_range)

    def train_step(self):
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def gradients(self):
        """(loss, {name: gradient as numpy}) at the current weights, no update."""
        self.model.train()
        self.model.zero_grad(set_to_none=True)
        loss = self.loss()
        loss.backward()
        grads = {n: p.grad.detach().numpy().copy() for n, p in self.model.named_parameters()}
        self.model.zero_grad(set_to_none=True)
        return float(loss.detach()), grads


class Jax:
    """mskjax's E2EVarNet with the same weights: jitted inference and training step."""

    def __init__(self, torch_net, kspace, mask, target):
        model = nets.load_fastmri(torch_net.state_dict())
        self.graphdef, self.params = nnx.split(model)
        self.k, self.m, self.t = jnp.asarray(kspace), jnp.asarray(mask), jnp.asarray(target)
        self.optimizer = optax.adam(LEARNING_RATE)
        self.opt_state = self.optimizer.init(self.params)
        graphdef, optimizer = self.graphdef, self.optimizer

        def infer(params, k, m):
            return nnx.merge(graphdef, params)(k, m)

        def loss(params, k, m, t):
            return losses.ssim_loss(t, nnx.merge(graphdef, params)(k, m), data_range=jnp.max(t))

        def step(params, opt_state, k, m, t):
            value, grads = jax.value_and_grad(loss)(params, k, m, t)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, value, grads

        self._infer = jax.jit(infer)
        self._step = jax.jit(step, donate_argnums=(0, 1))

    def infer(self):
        return self._infer(self.params, self.k, self.m)

    def train_step(self):
        self.params, self.opt_state, value, grads = self._step(self.params, self.opt_state,
                                                               self.k, self.m, self.t)
        self.last_grads = grads
        return value

    def compiled(self, mode):
        if mode == "inference":
            return self._infer.lower(self.params, self.k, self.m).compile()
        return self._step.lower(self.params, self.opt_state, self.k, self.m, self.t).compile()


def relative_difference(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), np.finfo(np.float64).tiny))


def gradient_agreement(jax_grads, torch_grads):
    """Relative L2 difference of all gradients, and the largest per-tensor one."""
    as_model = nets.load_fastmri(torch_grads)  # torch's gradients in mskjax's layout
    _, expected = nnx.split(as_model)
    ours = jax.tree.leaves(jax_grads)
    theirs = jax.tree.leaves(expected)
    if len(ours) != len(theirs):
        raise RuntimeError("the gradient trees of the two frameworks differ")
    num = sum(float(np.sum((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
              for a, b in zip(ours, theirs))
    den = sum(float(np.sum(np.asarray(b, np.float64) ** 2)) for b in theirs)
    per_tensor = [float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64))
                        / max(np.linalg.norm(np.asarray(b, np.float64)), 1e-30))
                  for a, b in zip(ours, theirs)]
    return {"relative_l2": (num / den) ** 0.5, "max_tensor_relative_l2": max(per_tensor)}


def run_config(name, config, repeats, train_repeats, train, separate):
    # subprocess training first, while this process holds no model (memory)
    separate_step = separate_training(name, train_repeats) if train and separate else None
    kspace, mask, target = make_case(config)
    net = torch_model(config)
    peer, ours = Torch(net, kspace, mask, target), Jax(net, kspace, mask, target)
    out = {"config": {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()},
           "parameters": sum(p.numel() for p in net.parameters())}

    infer = interleaved({"mskjax": ours.infer, "torch": peer.infer}, repeats)
    out["inference"] = {**infer, "torch_over_mskjax": infer["torch"]["median_s"]
                        / infer["mskjax"]["median_s"],
                        "max_relative_difference": relative_difference(
                            ours.infer(), peer.infer()[0].numpy())}
    if separate_step is not None:
        out["training_step"] = separate_step
    elif train:
        torch_loss, torch_grads = peer.gradients()  # the same weights as ours, before any step
        start = time.perf_counter()
        jax_loss = float(ours.train_step())
        first = time.perf_counter() - start
        agreement = {"loss_mskjax": jax_loss, "loss_torch": torch_loss,
                     "loss_relative_difference": abs(jax_loss - torch_loss) / abs(torch_loss),
                     **gradient_agreement(ours.last_grads, torch_grads)}
        peer.train_step()
        step = interleaved({"mskjax": ours.train_step, "torch": peer.train_step}, train_repeats)
        step["mskjax"]["first_s"] = first  # the agreement step: compilation and one step
        out["training_step"] = {**step, "torch_over_mskjax": step["torch"]["median_s"]
                                / step["mskjax"]["median_s"], "interleaved": True, **agreement}
    return out


# -- training steps one framework at a time, in subprocesses (for sizes that need the memory) --

def train_child(framework, name, repeats, prefix):
    """One framework's training steps: the first (compiled) step, ``repeats`` steady steps, the
    peak resident growth over all of them, the first step's loss and gradients (to files)."""
    config = CONFIGS[name]
    kspace, mask, target = make_case(config)
    net = torch_model(config)
    out = {"load_average_start": load_average()}
    if framework == "torch":
        runner = Torch(net, kspace, mask, target)
        loss, grads = runner.gradients()
        np.savez(prefix + ".npz", **grads)
        step = runner.train_step
    else:
        runner = Jax(net, kspace, mask, target)
        del net
        start = time.perf_counter()
        compiled = runner.compiled("training_step")
        out["compile_s"] = time.perf_counter() - start
        analysis = compiled.memory_analysis()
        out["xla_temp_mib"] = analysis.temp_size_in_bytes / 2**20
        out["xla_output_mib"] = analysis.output_size_in_bytes / 2**20

        def step():
            runner.params, runner.opt_state, value, runner.last_grads = compiled(
                runner.params, runner.opt_state, runner.k, runner.m, runner.t)
            return value
    import gc

    gc.collect()
    _reset_peak()
    base = _rss_kib("VmRSS")
    start = time.perf_counter()
    first_loss = float(jax.block_until_ready(step()))
    out["first_s"] = time.perf_counter() - start + out.get("compile_s", 0.0)
    if framework == "mskjax":
        loss = first_loss
        leaves = jax.tree.leaves(runner.last_grads)
        np.savez(prefix + ".npz", *[np.asarray(a) for a in leaves])
    out["loss"] = loss
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step())
        times.append(time.perf_counter() - start)
    out["peak_growth_mib"] = (_rss_kib("VmHWM") - base) / 1024
    out.update(median_s=statistics.median(times), min_s=min(times),
               load_average_end=load_average())
    Path(prefix + ".json").write_text(json.dumps(out))


def separate_training(name, repeats):
    import tempfile

    out = {"interleaved": False}
    with tempfile.TemporaryDirectory() as tmp:
        for framework in ("torch", "mskjax"):
            prefix = str(Path(tmp) / framework)
            command = [sys.executable, str(Path(__file__).resolve()), "--kernel-gradient",
                       _conv.KERNEL_GRADIENT, "--train-child",
                       f"{framework},{name},{repeats},{prefix}"]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{framework} training subprocess failed:\n{done.stderr[-2000:]}")
            out[framework] = json.loads(Path(prefix + ".json").read_text())
        torch_grads = dict(np.load(str(Path(tmp) / "torch.npz")))
        with np.load(str(Path(tmp) / "mskjax.npz")) as f:
            jax_grads = [f[f"arr_{i}"] for i in range(len(f.files))]
    loss_j, loss_t = out["mskjax"]["loss"], out["torch"]["loss"]
    out.update(torch_over_mskjax=out["torch"]["median_s"] / out["mskjax"]["median_s"],
               loss_mskjax=loss_j, loss_torch=loss_t,
               loss_relative_difference=abs(loss_j - loss_t) / abs(loss_t),
               **gradient_agreement(jax_grads, torch_grads))
    return out


# -- peak memory in a subprocess ---------------------------------------------------------------

def _rss_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak():
    Path("/proc/self/clear_refs").write_text("5")


def memory_child(framework, name, mode):
    """Print JSON: the peak resident growth (MiB) of one call after setup and compilation."""
    import gc

    config = CONFIGS[name]
    kspace, mask, target = make_case(config)
    net = torch_model(config)
    if framework == "torch":
        runner = Torch(net, kspace, mask, target)
        call = runner.infer if mode == "inference" else runner.train_step
        extra = {}
    else:
        runner = Jax(net, kspace, mask, target)
        del net
        compiled = runner.compiled(mode)
        analysis = compiled.memory_analysis()
        extra = {"xla_temp_mib": analysis.temp_size_in_bytes / 2**20,
                 "xla_output_mib": analysis.output_size_in_bytes / 2**20,
                 "xla_argument_mib": analysis.argument_size_in_bytes / 2**20}
        if mode == "inference":
            def call():
                return compiled(runner.params, runner.k, runner.m)
        else:
            def call():
                runner.params, runner.opt_state, value, _ = compiled(
                    runner.params, runner.opt_state, runner.k, runner.m, runner.t)
                return value
    growth = []
    for _ in range(2 if mode == "inference" else 1):  # one training step is enough
        gc.collect()
        _reset_peak()
        base = _rss_kib("VmRSS")
        result = call()
        jax.block_until_ready(result)
        growth.append((_rss_kib("VmHWM") - base) / 1024)
        del result
    print(json.dumps({"peak_growth_mib": max(growth), **extra}))


def memory_runs(names, modes, skip=()):
    out = {}
    for name in names:
        for mode in modes:
            if (name, mode) in skip:
                continue
            for framework in ("mskjax", "torch"):
                command = [sys.executable, str(Path(__file__).resolve()), "--kernel-gradient",
                           _conv.KERNEL_GRADIENT, "--memory-child",
                           f"{'jax' if framework == 'mskjax' else 'torch'},{name},{mode}"]
                done = subprocess.run(command, capture_output=True, text=True)
                if done.returncode != 0:
                    out.setdefault(name, {}).setdefault(mode, {})[framework] = {
                        "error": done.stderr.strip().splitlines()[-1:]}
                    continue
                value = json.loads(done.stdout.strip().splitlines()[-1])
                out.setdefault(name, {}).setdefault(mode, {})[framework] = value
    return out


# -- layer by layer ----------------------------------------------------------------------------

def unet_conv_shapes(batch, spatial, chans, pools, in_chans=2, out_chans=2):
    """Every distinct convolution of a fastMRI U-Net: (batch, (rows, cols), in, out, window)."""
    shapes = []
    rows, cols = spatial
    for level in range(pools + 1):
        c = chans << level
        size = (rows >> level, cols >> level)
        if level == 0:
            shapes += [(batch, size, in_chans, c, 3), (batch, size, c, c, 3),
                       (batch, size, 2 * c, c, 3), (batch, size, c, out_chans, 1)]
        elif level < pools:
            shapes += [(batch, size, c // 2, c, 3), (batch, size, c, c, 3),
                       (batch, size, 2 * c, c, 3)]
        else:
            shapes += [(batch, size, c // 2, c, 3), (batch, size, c, c, 3)]
    return shapes


LAYER_SETS = {
    "unet320": lambda: unet_conv_shapes(1, (320, 320), 18, 4),
    "varnet": lambda: unet_conv_shapes(1, (640, 368), 18, 4),
    "sens": lambda: unet_conv_shapes(15, (640, 368), 8, 4),
}


def _with_rule(rule, fn):
    """``fn`` traced with ``mskjax.nets._conv.KERNEL_GRADIENT = rule``."""
    def wrapped(*args):
        saved = _conv.KERNEL_GRADIENT
        _conv.KERNEL_GRADIENT = rule
        try:
            return fn(*args)
        finally:
            _conv.KERNEL_GRADIENT = saved
    return wrapped


def conv_layer_row(batch, spatial, cin, cout, window, repeats, rng):
    pad = window // 2
    x = jnp.asarray(rng.standard_normal((batch, *spatial, cin), dtype=np.float32))
    k = jnp.asarray(rng.standard_normal((window, window, cin, cout), dtype=np.float32)
                    / np.sqrt(cin * window * window))
    g = jnp.asarray(rng.standard_normal((batch, *spatial, cout), dtype=np.float32))

    def grad(x, k, g):
        return jax.vjp(lambda x, k: nets.conv(x, k, padding=pad), x, k)[1](g)

    forward = jax.jit(lambda x, k: nets.conv(x, k, padding=pad))
    xla_grad = jax.jit(_with_rule("xla", grad))
    ours_grad = jax.jit(_with_rule("auto", grad))
    xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())
    kt = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
    gt = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())

    def torch_forward():
        with torch.no_grad():
            return torch.nn.functional.conv2d(xt, kt, padding=pad)

    def torch_grad():
        return torch.ops.aten.convolution_backward(gt, xt, kt, None, [1, 1], [pad, pad], [1, 1],
                                                   False, [0, 0], 1, [True, True, False])[:2]

    a, b, c = xla_grad(x, k, g), ours_grad(x, k, g), torch_grad()
    error = max(relative_difference(b[0], a[0]), relative_difference(b[1], a[1]),
                relative_difference(b[0], np.asarray(c[0]).transpose(0, 2, 3, 1)),
                relative_difference(b[1], np.asarray(c[1]).transpose(2, 3, 1, 0)))
    times = interleaved({"forward": lambda: forward(x, k), "xla_grad": lambda: xla_grad(x, k, g),
                         "mskjax_grad": lambda: ours_grad(x, k, g),
                         "torch_forward": torch_forward, "torch_grad": torch_grad}, repeats)
    return {"shape": f"{batch}x{spatial[0]}x{spatial[1]} {cin}->{cout} {window}x{window}",
            **{n: t["median_s"] for n, t in times.items()},
            "min": {n: t["min_s"] for n, t in times.items()},
            "max_relative_difference": error}


def other_layer_rows(repeats, rng):
    """conv_transpose (2x2, stride 2) and average pooling, forward and gradient, vs torch."""
    rows = []
    for batch, spatial, cin, cout in [(1, (160, 160), 36, 18), (1, (20, 20), 288, 144),
                                      (15, (320, 184), 16, 8)]:
        x = jnp.asarray(rng.standard_normal((batch, *spatial, cin), dtype=np.float32))
        k = jnp.asarray(rng.standard_normal((2, 2, cin, cout), dtype=np.float32))
        g = jnp.asarray(rng.standard_normal((batch, 2 * spatial[0], 2 * spatial[1], cout),
                                            dtype=np.float32))
        forward = jax.jit(lambda x, k: nets.conv_transpose(x, k, stride=2))
        grad = jax.jit(lambda x, k, g: jax.vjp(
            lambda x, k: nets.conv_transpose(x, k, stride=2), x, k)[1](g))
        xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
        kt = torch.from_numpy(np.asarray(k).transpose(2, 3, 0, 1).copy()).requires_grad_()
        gt = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())

        def torch_forward():
            with torch.no_grad():
                return torch.nn.functional.conv_transpose2d(xt, kt, stride=2)

        def torch_grad():
            y = torch.nn.functional.conv_transpose2d(xt, kt, stride=2)
            return torch.autograd.grad(y, (xt, kt), gt)

        error = relative_difference(forward(x, k), torch_forward().numpy().transpose(0, 2, 3, 1))
        ours, theirs = grad(x, k, g), torch_grad()
        error = max(error, relative_difference(ours[0], theirs[0].numpy().transpose(0, 2, 3, 1)),
                    relative_difference(ours[1], theirs[1].numpy().transpose(2, 3, 0, 1)))
        times = interleaved({"forward": lambda: forward(x, k), "mskjax_grad": lambda: grad(x, k, g),
                             "torch_forward": torch_forward, "torch_grad": torch_grad}, repeats)
        rows.append({"shape": f"conv_transpose {batch}x{spatial[0]}x{spatial[1]} {cin}->{cout}",
                     **{n: t["median_s"] for n, t in times.items()},
                     "max_relative_difference": error})
    for batch, spatial, chans in [(1, (320, 320), 18), (15, (640, 368), 8)]:
        x = jnp.asarray(rng.standard_normal((batch, *spatial, chans), dtype=np.float32))
        g = jnp.asarray(rng.standard_normal((batch, spatial[0] // 2, spatial[1] // 2, chans),
                                            dtype=np.float32))
        forward = jax.jit(nets.avg_pool)
        grad = jax.jit(lambda x, g: jax.vjp(nets.avg_pool, x)[1](g))
        xt = torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy()).requires_grad_()
        gt = torch.from_numpy(np.asarray(g).transpose(0, 3, 1, 2).copy())

        def torch_forward():
            with torch.no_grad():
                return torch.nn.functional.avg_pool2d(xt, 2)

        def torch_grad():
            return torch.autograd.grad(torch.nn.functional.avg_pool2d(xt, 2), xt, gt)

        times = interleaved({"forward": lambda: forward(x), "mskjax_grad": lambda: grad(x, g),
                             "torch_forward": torch_forward, "torch_grad": torch_grad}, repeats)
        rows.append({"shape": f"avg_pool {batch}x{spatial[0]}x{spatial[1]}x{chans}",
                     **{n: t["median_s"] for n, t in times.items()}})
    return rows


def whole_unet_rows(repeats, spatial=(320, 320), chans=18, pools=4, batch=1):
    torch.manual_seed(0)
    peer = fastmri.models.Unet(2, 2, chans=chans, num_pool_layers=pools)
    model = nets.load_fastmri(peer.state_dict())
    graphdef, params = nnx.split(model)
    x = np.random.default_rng(0).standard_normal((batch, *spatial, 2), dtype=np.float32)
    xj = jnp.asarray(x)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())

    def loss(params, x):
        return jnp.mean(jnp.abs(nnx.merge(graphdef, params)(x)))

    forward = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
    xla_grad = jax.jit(_with_rule("xla", jax.grad(loss)))
    ours_grad = jax.jit(_with_rule("auto", jax.grad(loss)))

    def torch_forward():
        with torch.no_grad():
            return peer(xt)

    def torch_grad():
        peer.zero_grad(set_to_none=True)
        value = peer(xt).abs().mean()
        value.backward()
        return value

    error = relative_difference(forward(params, xj), torch_forward().numpy().transpose(0, 2, 3, 1))
    times = interleaved({"forward": lambda: forward(params, xj),
                         "xla_grad": lambda: xla_grad(params, xj),
                         "mskjax_grad": lambda: ours_grad(params, xj),
                         "torch_forward": torch_forward, "torch_grad": torch_grad}, repeats)
    return {"shape": f"U-Net {batch}x{spatial[0]}x{spatial[1]} chans {chans} pools {pools}",
            **{n: t["median_s"] for n, t in times.items()},
            "min": {n: t["min_s"] for n, t in times.items()},
            "max_relative_difference": error}


def print_layer_header():
    header = (f"{'layer':<44}{'fwd ms':>8}{'torch':>8}{'xla grad':>10}{'ours':>8}{'torch':>8}"
              f"{'xla/torch':>10}{'ours/torch':>11}{'rel.diff':>9}")
    print(header)
    print("-" * len(header))


def print_layer_rows(rows):
    columns = ["forward", "torch_forward", "xla_grad", "mskjax_grad", "torch_grad"]
    for r in rows:
        cells = "".join(f"{1e3 * r[c]:>{w}.1f}" if c in r else " " * (w - 1) + "-"
                        for c, w in zip(columns, (8, 8, 10, 8, 8)))
        ratio_xla = r["xla_grad"] / r["torch_grad"] if "xla_grad" in r else None
        ratio_ours = r["mskjax_grad"] / r["torch_grad"]
        diff = r.get("max_relative_difference")
        print(f"{r['shape']:<44}{cells}"
              + (f"{ratio_xla:>10.2f}" if ratio_xla else " " * 9 + "-")
              + f"{ratio_ours:>11.2f}" + (f"{diff:>9.0e}" if diff is not None else ""),
              flush=True)


def run_layers(sets, repeats):
    rng = np.random.default_rng(0)
    rows = []
    seen = set()
    print("\nLayer by layer (median ms; grad = input and kernel gradient for a given cotangent)")
    print_layer_header()
    for name in sets:
        for batch, spatial, cin, cout, window in LAYER_SETS[name]():
            key = (batch, spatial, cin, cout, window)
            if key in seen:
                continue
            seen.add(key)
            rows.append(conv_layer_row(batch, spatial, cin, cout, window, repeats, rng))
            print_layer_rows(rows[-1:])
    others = other_layer_rows(repeats, rng)
    print_layer_rows(others)
    unet = whole_unet_rows(repeats)
    print_layer_rows([unet])
    return {"convolutions": rows, "other": others, "unet": unet}


# -- main --------------------------------------------------------------------------------------

def report_header(args):
    import mskjax

    return {
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "backend": jax.default_backend(),
                    "xla_flags": os.environ.get("XLA_FLAGS", ""),
                    "torch_threads": torch.get_num_threads(),
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_average_start": load_average()},
        "versions": {"mskjax": mskjax.__version__, "jax": jax.__version__,
                     "torch": torch.__version__, "fastmri": getattr(fastmri, "__version__", "?"),
                     "numpy": np.__version__, "optax": optax.__version__},
        "settings": {"repeats": args.repeats, "train_repeats": args.train_repeats,
                     "configs": args.configs, "kernel_gradient": _conv.KERNEL_GRADIENT},
    }


def fmt_s(value):
    return f"{value:9.3f}" if isinstance(value, (int, float)) else "        -"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="small,published")
    parser.add_argument("--repeats", type=int, default=5, help="inference repeats")
    parser.add_argument("--train-repeats", type=int, default=3, help="training-step repeats")
    parser.add_argument("--no-train", action="store_true", help="inference only")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--quick", action="store_true",
                        help="small configuration, 3 repeats, no memory subprocesses")
    parser.add_argument("--layers", action="store_true", help="the layer-by-layer table")
    parser.add_argument("--layer-sets", default="unet320,varnet,sens")
    parser.add_argument("--layers-only", action="store_true", help="skip the VarNet runs")
    parser.add_argument("--kernel-gradient", default=None, choices=["auto", "matmul", "xla"],
                        help="mskjax.nets.conv's kernel-gradient rule for the VarNet runs")
    parser.add_argument("--json", default=None, help="where to write the JSON results")
    parser.add_argument("--separate-training", default="published",
                        help="configurations whose training steps run one framework at a time "
                             "in subprocesses (not interleaved; both at once need too much "
                             "memory); comma-separated, or 'none'")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.kernel_gradient:
        _conv.KERNEL_GRADIENT = args.kernel_gradient
    if args.memory_child:
        framework, name, mode = args.memory_child.split(",")
        memory_child(framework, name, mode)
        return
    if args.train_child:
        framework, name, repeats, prefix = args.train_child.split(",")
        train_child(framework, name, int(repeats), prefix)
        return
    if args.quick:
        args.configs, args.repeats, args.train_repeats, args.no_memory = "small", 3, 3, True
    results = report_header(args)
    m = results["machine"]
    print(f"{m['platform']}, {m['cpus']} CPUs, load average {m['load_average_start']}; "
          f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
          f"({m['torch_threads']} threads, OMP_WAIT_POLICY={m['omp_wait_policy']}), fastmri "
          f"{results['versions']['fastmri']}")
    names = [] if args.layers_only else args.configs.split(",")
    results["configs"] = {}
    if names:
        header = (f"{'config':<11}{'mode':<16}{'first s':>9}{'mskjax s':>9}{'first s':>9}"
                  f"{'torch s':>9}{'torch/ours':>11}{'max rel.diff':>13}")
        print("\nmskjax E2EVarNet vs fastmri.models.VarNet (first call, then median steady "
              "state; 'first' of mskjax = XLA compilation + one run)")
        print(header)
        print("-" * len(header))
    for name in names:
        separate = name in args.separate_training.split(",")
        r = run_config(name, CONFIGS[name], args.repeats, args.train_repeats, not args.no_train,
                       separate)
        results["configs"][name] = r
        for mode in ("inference", "training_step"):
            if mode not in r:
                continue
            s = r[mode]
            diff = s.get("max_relative_difference", s.get("relative_l2"))
            print(f"{name:<11}{mode.replace('_', ' '):<16}{fmt_s(s['mskjax']['first_s'])}"
                  f"{fmt_s(s['mskjax']['median_s'])}{fmt_s(s['torch']['first_s'])}"
                  f"{fmt_s(s['torch']['median_s'])}{s['torch_over_mskjax']:>10.2f}x"
                  f"{diff:>13.1e}", flush=True)
        if "training_step" in r:
            s = r["training_step"]
            print(f"{'':<11}first step: loss mskjax {s['loss_mskjax']:.6f}, torch "
                  f"{s['loss_torch']:.6f}; gradients: relative L2 difference "
                  f"{s['relative_l2']:.1e} (largest per tensor {s['max_tensor_relative_l2']:.1e})")
            if not s["interleaved"]:
                print(f"{'':<11}training steps timed one framework at a time in subprocesses "
                      f"(load average torch {s['torch']['load_average_start']}, mskjax "
                      f"{s['mskjax']['load_average_start']})")
    if names and not args.no_memory:
        modes = ["inference"] + ([] if args.no_train else ["training_step"])
        print("\npeak resident memory growth during one call (fresh subprocess each; MiB)")
        separate = [n for n in names if n in args.separate_training.split(",")]
        memory = memory_runs(names, modes, skip={(n, "training_step") for n in separate})
        for name in separate:  # measured in the training subprocesses
            s = results["configs"][name].get("training_step")
            if s is not None:
                memory.setdefault(name, {})["training_step"] = {
                    f: {k: v for k, v in s[f].items() if "mib" in k} for f in ("mskjax", "torch")}
        results["memory"] = memory
        for name, by_mode in memory.items():
            for mode, by_framework in by_mode.items():
                ours, theirs = by_framework.get("mskjax", {}), by_framework.get("torch", {})
                xla = (f"; XLA plan: temporaries {ours['xla_temp_mib']:.0f}, outputs "
                       f"{ours['xla_output_mib']:.0f}" if "xla_temp_mib" in ours else "")
                print(f"{name:<11}{mode.replace('_', ' '):<16} mskjax "
                      f"{ours.get('peak_growth_mib', float('nan')):8.0f}  torch "
                      f"{theirs.get('peak_growth_mib', float('nan')):8.0f}{xla}"
                      + (f"  errors: {ours.get('error')} {theirs.get('error')}"
                         if "error" in ours or "error" in theirs else ""))
    if args.layers or args.layers_only:
        results["layers"] = run_layers(args.layer_sets.split(","), max(args.repeats, 5))
    results["machine"]["load_average_end"] = load_average()
    print(f"\nload average at the end {results['machine']['load_average_end']} "
          f"({os.cpu_count()} CPUs)")
    path = Path(args.json) if args.json else (Path(__file__).parent / "results"
                                              / "varnet_speed.json")
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
