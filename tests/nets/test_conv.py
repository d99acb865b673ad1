"""mskjax.nets.conv / conv_transpose: values and gradients against lax and PyTorch, every rank,
padding and kernel-gradient rule; forward mode, vmap, float64, memory of scanned gradients."""

from __future__ import annotations

import contextlib

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads

from mskjax.nets import _conv, conv, conv_transpose

torch = pytest.importorskip("torch")

RULES = ["matmul", "xla", "auto"]


@contextlib.contextmanager
def rule(name):
    saved = _conv.KERNEL_GRADIENT
    _conv.KERNEL_GRADIENT = name
    try:
        yield
    finally:
        _conv.KERNEL_GRADIENT = saved


def reference(x, kernel, padding):
    """lax.conv_general_dilated, differentiated by JAX."""
    ndim = kernel.ndim - 2
    if isinstance(padding, int):
        padding = [(padding, padding)] * ndim
    spatial = "DHW"[-ndim:]
    return lax.conv_general_dilated(x, kernel, (1,) * ndim, padding,
                                    dimension_numbers=(f"N{spatial}C", f"{spatial}IO",
                                                       f"N{spatial}C"))


def relative(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def grads(fn, x, kernel, cotangent):
    out, vjp = jax.vjp(fn, x, kernel)
    return out, *vjp(cotangent)


# (batch, spatial, window, in, out, padding): odd and even sizes and windows, every padding form
CASES = [
    (2, (9, 8), (3, 3), 3, 5, "SAME"),
    (1, (9, 8), (3, 3), 6, 2, 1),
    (2, (7, 10), (3, 3), 4, 4, "VALID"),
    (1, (8, 7), (2, 3), 3, 2, "SAME"),
    (2, (10, 9), (5, 5), 2, 7, 3),
    (1, (8, 9), (3, 3), 3, 4, [(0, 2), (2, 1)]),
    (2, (9, 8), (1, 1), 5, 3, 0),
    (3, (11,), (3,), 4, 6, "SAME"),
    (2, (12,), (4,), 3, 2, "VALID"),
    (1, (5, 6, 7), (3, 3, 3), 3, 4, 1),
    (2, (4, 5, 6), (3, 2, 3), 2, 3, "SAME"),
]


@pytest.mark.parametrize("rule_name", RULES)
@pytest.mark.parametrize("batch, spatial, window, cin, cout, padding", CASES)
def test_conv_equals_lax_values_and_gradients(rule_name, batch, spatial, window, cin, cout,
                                              padding):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, *spatial, cin), dtype=np.float32))
    kernel = jnp.asarray(rng.standard_normal((*window, cin, cout), dtype=np.float32))
    ref_out = reference(x, kernel, padding)
    g = jnp.asarray(rng.standard_normal(ref_out.shape, dtype=np.float32))
    with rule(rule_name):
        out, dx, dk = jax.jit(lambda x, k, g: grads(
            lambda x, k: conv(x, k, padding=padding), x, k, g))(x, kernel, g)
    _, ref_dx, ref_dk = grads(lambda x, k: reference(x, k, padding), x, kernel, g)
    assert out.shape == ref_out.shape
    assert relative(out, ref_out) < 1e-6
    assert relative(dx, ref_dx) < 1e-6
    assert relative(dk, ref_dk) < 2e-6


@pytest.mark.parametrize("batch, spatial, window, cin, cout, padding", [
    (2, (9, 8), (3, 3), 3, 5, "SAME"),
    (1, (11, 7), (3, 3), 6, 2, "VALID"),
    (2, (10, 9), (5, 5), 2, 7, [(2, 1), (0, 2)]),
    (1, (7, 6, 5), (3, 3, 3), 3, 2, 1),
    (2, (8, 6), (2, 3), 2, 4, "SAME"),
])
def test_tiled_kernel_gradient_equals_lax(monkeypatch, batch, spatial, window, cin, cout,
                                          padding):
    """Large images take the kernel gradient tile by tile (a few output rows at a time in a
    lax.scan); forced here on small ones, with tiles that do not divide the rows."""
    monkeypatch.setattr(_conv, "TILE_BYTES", 4 * 64)
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.standard_normal((batch, *spatial, cin), dtype=np.float32))
    kernel = jnp.asarray(rng.standard_normal((*window, cin, cout), dtype=np.float32))
    pads = _conv._explicit_padding(padding, window)
    assert _conv._plan("matmul", x.shape, kernel.shape, pads)[2] is not None  # tiled
    ref_out = reference(x, kernel, padding)
    g = jnp.asarray(rng.standard_normal(ref_out.shape, dtype=np.float32))
    with rule("matmul"):
        out, dx, dk = grads(lambda x, k: conv(x, k, padding=padding), x, kernel, g)
        _, tangent = jax.jvp(lambda k: conv(x, k, padding=padding), (kernel,), (kernel,))
    _, ref_dx, ref_dk = grads(lambda x, k: reference(x, k, padding), x, kernel, g)
    assert relative(dx, ref_dx) < 1e-6
    assert relative(dk, ref_dk) < 2e-6
    assert relative(tangent, ref_out) < 2e-6  # conv is linear in the kernel


def torch_conv(nd):
    return {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d,
            3: torch.nn.functional.conv3d}[nd]


@pytest.mark.parametrize("rule_name", ["matmul", "xla"])
@pytest.mark.parametrize("spatial, window, cin, cout", [
    ((13,), (3,), 3, 5), ((9, 8), (3, 3), 4, 6), ((10, 7), (3, 3), 18, 2),
    ((5, 6, 4), (3, 3, 3), 2, 3)])
def test_conv_equals_torch(rule_name, spatial, window, cin, cout):
    """Zero padding (k - 1) / 2, the fastMRI U-Net's convolution: values and both gradients
    against torch's autograd (channels-first, OIHW kernels)."""
    nd = len(spatial)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, *spatial, cin), dtype=np.float32)
    kernel = rng.standard_normal((*window, cin, cout), dtype=np.float32)
    pad = window[0] // 2
    out_shape = (2, *spatial, cout)
    g = rng.standard_normal(out_shape, dtype=np.float32)
    with rule(rule_name):
        out, dx, dk = grads(lambda x, k: conv(x, k, padding=pad), jnp.asarray(x),
                            jnp.asarray(kernel), jnp.asarray(g))
    to_first = (0, nd + 1, *range(1, nd + 1))
    xt = torch.from_numpy(x.transpose(to_first).copy()).requires_grad_()
    kt = torch.from_numpy(kernel.transpose(nd + 1, nd, *range(nd)).copy()).requires_grad_()
    yt = torch_conv(nd)(xt, kt, padding=pad)
    dxt, dkt = torch.autograd.grad(yt, (xt, kt), torch.from_numpy(g.transpose(to_first).copy()))
    to_last = (0, *range(2, nd + 2), 1)
    assert relative(out, yt.detach().numpy().transpose(to_last)) < 1e-5
    assert relative(dx, dxt.numpy().transpose(to_last)) < 1e-5
    assert relative(dk, dkt.numpy().transpose(*range(2, nd + 2), 1, 0)) < 1e-5


def count_convolutions(fn, *args):
    jaxpr = jax.make_jaxpr(fn)(*args)
    count = 0

    def walk(jaxpr):
        nonlocal count
        for eqn in jaxpr.eqns:
            count += eqn.primitive.name == "conv_general_dilated"
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jaxpr.jaxpr)
    return count


def test_matmul_rule_replaces_the_kernel_gradient_convolution():
    """The custom rule is really used: the gradient has no convolution for the kernel (forward
    and input gradient only), and XLA's rule has three."""
    x, kernel = jnp.ones((1, 8, 8, 4)), jnp.ones((3, 3, 4, 4))

    def loss(x, k):
        return jnp.sum(conv(x, k, padding=1) ** 2)

    with rule("matmul"):
        both = count_convolutions(jax.grad(loss, argnums=(0, 1)), x, kernel)
        kernel_only = count_convolutions(jax.grad(loss, argnums=1), x, kernel)
    with rule("xla"):
        plain = count_convolutions(jax.grad(loss, argnums=(0, 1)), x, kernel)
    assert (both, kernel_only, plain) == (2, 1, 3)


@pytest.mark.parametrize("rule_name", ["matmul", "xla"])
def test_float64_gradients_first_and_second_order(rule_name):
    """check_grads in float64: forward and reverse mode, first and second order."""
    with jax.enable_x64(True), rule(rule_name):
        rng = np.random.default_rng(2)
        x = jnp.asarray(rng.standard_normal((2, 6, 5, 3)))
        kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 4)))

        def fn(x, k):
            y = conv(x, k, padding="SAME")
            assert y.dtype == jnp.float64
            return jnp.tanh(y)

        check_grads(fn, (x, kernel), order=2, modes=("fwd", "rev"), eps=1e-6, atol=1e-6,
                    rtol=1e-6)


def test_jvp_and_hessian_equal_lax():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((1, 7, 6, 3), dtype=np.float32))
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 2), dtype=np.float32))
    tx, tk = (jnp.asarray(rng.standard_normal(a.shape, dtype=np.float32)) for a in (x, kernel))
    with rule("matmul"):
        _, ours = jax.jvp(lambda x, k: conv(x, k, padding=1), (x, kernel), (tx, tk))
        hess = jax.hessian(lambda k: jnp.sum(jnp.sin(conv(x, k, padding=1))))(kernel)
    _, expected = jax.jvp(lambda x, k: reference(x, k, 1), (x, kernel), (tx, tk))
    expected_hess = jax.hessian(lambda k: jnp.sum(jnp.sin(reference(x, k, 1))))(kernel)
    assert relative(ours, expected) < 1e-5
    assert relative(hess, expected_hess) < 1e-4


def test_vmap_equals_a_loop():
    rng = np.random.default_rng(4)
    xs = jnp.asarray(rng.standard_normal((3, 2, 6, 7, 2), dtype=np.float32))
    kernels = jnp.asarray(rng.standard_normal((3, 3, 3, 2, 4), dtype=np.float32))

    def loss(x, k):
        return jnp.sum(jnp.cos(conv(x, k, padding=1)))

    with rule("matmul"):
        batched = jax.vmap(jax.grad(loss, argnums=(0, 1)))(xs, kernels)
        looped = [jax.grad(loss, argnums=(0, 1))(x, k) for x, k in zip(xs, kernels)]
    for i, (dx, dk) in enumerate(looped):
        assert relative(batched[0][i], dx) < 1e-6
        assert relative(batched[1][i], dk) < 1e-6


@pytest.mark.parametrize("tile_bytes", [None, 4096])
def test_scanned_gradient_keeps_only_the_input(monkeypatch, tile_bytes):
    """Reverse mode through lax.scan stores per-step residuals: the matmul rule must not store
    its shifted copies of the input (they are rebuilt in the backward pass), tiled or not."""
    if tile_bytes is not None:
        monkeypatch.setattr(_conv, "TILE_BYTES", tile_bytes)
    x = jnp.ones((1, 64, 64, 4))
    kernels = jnp.ones((8, 3, 3, 4, 4)) * 0.01

    def loss(x, ks):
        def body(h, k):
            return jnp.tanh(conv(h, k, padding=1)), None
        return jnp.sum(lax.scan(body, x, ks)[0])

    def temp_bytes(rule_name):
        with rule(rule_name):
            compiled = jax.jit(jax.grad(loss, argnums=1)).lower(x, kernels).compile()
        return compiled.memory_analysis().temp_size_in_bytes

    assert temp_bytes("matmul") <= 1.5 * temp_bytes("xla")


def conv_labels(fn, *args):
    import re

    text = jax.jit(fn).lower(*args).compile().as_text()
    return {m.group(1) for m in re.finditer(r"convolution\(.*dim_labels=([^,\s]+)", text)}


@pytest.mark.parametrize("channels, batch", [(6, 1), (8, 16)])  # matmul and conv rules
def test_scanned_gradient_convolutions_have_plain_layouts(channels, batch):
    """Inside a loop body XLA's CPU backend runs a convolution with transposed dimension specs
    (as JAX's own transpose rules produce) 10 to 20 times slower: every convolution of the
    gradient must have the plain input/kernel/output specs under the custom rules."""
    x = jnp.ones((batch, 24, 24, channels))
    kernels = jnp.ones((3, 3, 3, channels, channels)) * 0.01

    def gradient():  # a new function each time: jit and scan cache traces per function
        def loss(ks, x):
            def body(h, k):
                return jnp.tanh(conv(h, k, padding=1)), None
            return jnp.sum(lax.scan(body, x, ks)[0])
        return jax.grad(loss, argnums=(0, 1))

    with rule("auto"):
        assert conv_labels(gradient(), kernels, x) == {"b01f_01io->b01f"}
    with rule("xla"):  # what the custom rules avoid
        assert len(conv_labels(gradient(), kernels, x)) > 1


def test_auto_rule_choices():
    faster = _conv._matmul_is_faster
    assert faster(320 * 320, (3, 3), 18, 18)  # fastMRI U-Net, one image
    assert faster(320 * 320, (1, 1), 18, 2)  # 1 x 1 head
    assert not faster(320 * 320, (3, 3), 2, 18)  # first layer: XLA's own is fast
    assert not faster(15 * 640 * 368, (3, 3), 8, 8)  # sensitivity U-Net, 15 coils
    assert faster(15 * 160 * 92, (3, 3), 32, 32)
    assert not faster(100, (3, 3), 18, 18)  # tiny


def test_kernel_gradient_rule_must_be_known():
    with rule("fast"), pytest.raises(ValueError, match="KERNEL_GRADIENT"):
        conv(jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding=1)


@pytest.mark.parametrize("x_shape, k_shape, padding, match", [
    ((1, 8, 8, 3), (3, 3, 4, 2), 1, r"x must be \(batch, \*spatial, 4\)"),
    ((8, 8, 3), (3, 3, 3, 2), 1, "x must be"),
    ((1, 4, 4, 4, 4, 1), (3, 3, 3, 3, 1, 1), 1, "1 to 3 spatial axes"),
    ((1, 8, 8, 3), (3, 3, 3, 2), "FULL", "padding must be"),
    ((1, 8, 8, 3), (3, 3, 3, 2), -1, "padding must be >= 0"),
    ((1, 8, 8, 3), (3, 3, 3, 2), [(1, 1)], "padding must be"),
])
def test_conv_bad_input(x_shape, k_shape, padding, match):
    with pytest.raises(ValueError, match=match):
        conv(jnp.ones(x_shape), jnp.ones(k_shape), padding=padding)


@pytest.mark.parametrize("spatial, stride, cin, cout", [
    ((5, 7), 2, 3, 4), ((4, 3), 3, 2, 5), ((6,), 2, 3, 2), ((3, 4, 2), 2, 2, 3)])
def test_conv_transpose_equals_torch(spatial, stride, cin, cout):
    nd = len(spatial)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, *spatial, cin), dtype=np.float32)
    kernel = rng.standard_normal(((stride,) * nd + (cin, cout)), dtype=np.float32)
    out_shape = (2, *(stride * n for n in spatial), cout)
    g = rng.standard_normal(out_shape, dtype=np.float32)
    out, dx, dk = grads(lambda x, k: conv_transpose(x, k, stride=stride), jnp.asarray(x),
                        jnp.asarray(kernel), jnp.asarray(g))
    to_first = (0, nd + 1, *range(1, nd + 1))
    xt = torch.from_numpy(x.transpose(to_first).copy()).requires_grad_()
    kt = torch.from_numpy(kernel.transpose(nd, nd + 1, *range(nd)).copy()).requires_grad_()
    fn = {1: torch.nn.functional.conv_transpose1d, 2: torch.nn.functional.conv_transpose2d,
          3: torch.nn.functional.conv_transpose3d}[nd]
    yt = fn(xt, kt, stride=stride)
    dxt, dkt = torch.autograd.grad(yt, (xt, kt), torch.from_numpy(g.transpose(to_first).copy()))
    to_last = (0, *range(2, nd + 2), 1)
    assert out.shape == out_shape
    assert relative(out, yt.detach().numpy().transpose(to_last)) < 1e-5
    assert relative(dx, dxt.numpy().transpose(to_last)) < 1e-5
    assert relative(dk, dkt.numpy().transpose(*range(2, nd + 2), 0, 1)) < 1e-5


def test_conv_transpose_bad_input():
    with pytest.raises(ValueError, match="kernel window must be"):
        conv_transpose(jnp.ones((1, 4, 4, 3)), jnp.ones((3, 3, 3, 2)), stride=2)
    with pytest.raises(ValueError, match=r"x must be \(batch, \*spatial, 3\)"):
        conv_transpose(jnp.ones((1, 4, 4, 2)), jnp.ones((2, 2, 3, 2)), stride=2)
