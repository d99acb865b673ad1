"""Weights of the fastMRI PyTorch models (``fastmri.models.Unet`` and ``VarNet``) in mskjax nets.

:func:`load_fastmri` builds a :class:`UNet` or an :class:`E2EVarNet` from a PyTorch state dict
(or a file holding one, or a PyTorch Lightning checkpoint), inferring the configuration from the
parameter names and shapes; :func:`to_fastmri_state_dict` goes back. Layouts are converted once
here: convolution weights ``(out, in, kh, kw)`` -> ``(kh, kw, in, out)``, transposed convolution
weights ``(in, out, kh, kw)`` -> ``(kh, kw, in, out)``; the cascades' weights are stacked on a
leading axis; ``dc_weight`` ``(1,)`` becomes a scalar. Weights are stored as float32.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import jax
import numpy as np
from flax import nnx

from ._blocks import shapes_only
from ._e2e_varnet import E2EVarNet
from ._unet import UNet

_FUNC = "mskjax.nets.load_fastmri"
_UNET_ANCHOR = "down_sample_layers.0.layers.0.weight"
_PREFIXES = ("varnet.", "unet.")


# -- the name table: (torch name, attribute path in the mskjax net, kind, cascade index) -------

def _unet_entries(num_pools, prefix="", path=()):
    n = num_pools
    for i in range(n):
        yield f"{prefix}down_sample_layers.{i}.layers.0.weight", (*path, "down", i, "kernel1"), \
            "conv"
        yield f"{prefix}down_sample_layers.{i}.layers.4.weight", (*path, "down", i, "kernel2"), \
            "conv"
    yield f"{prefix}conv.layers.0.weight", (*path, "bottom", "kernel1"), "conv"
    yield f"{prefix}conv.layers.4.weight", (*path, "bottom", "kernel2"), "conv"
    for i in range(n):
        yield (f"{prefix}up_transpose_conv.{i}.layers.0.weight",
               (*path, "up_transpose", i, "kernel"), "transpose")
        block = f"{prefix}up_conv.{i}." + ("0." if i == n - 1 else "")
        yield f"{block}layers.0.weight", (*path, "up", i, "kernel1"), "conv"
        yield f"{block}layers.4.weight", (*path, "up", i, "kernel2"), "conv"
    yield f"{prefix}up_conv.{n - 1}.1.weight", (*path, "head_kernel"), "conv"
    yield f"{prefix}up_conv.{n - 1}.1.bias", (*path, "head_bias"), "plain"


def _entries(kind, config):
    """``(torch name, attribute path, layout kind, cascade index or None)`` for a net."""
    if kind == "unet":
        return [(*e, None) for e in _unet_entries(config["num_pool_layers"])]
    out = [(*e, None) for e in _unet_entries(config["sens_pools"], "sens_net.norm_unet.unet.",
                                             ("sens_net", "unet"))]
    for k in range(config["num_cascades"]):
        out += [(*e, k) for e in _unet_entries(config["pools"], f"cascades.{k}.model.unet.",
                                               ("cascades", "regularizer", "unet"))]
        out.append((f"cascades.{k}.dc_weight", ("cascades", "dc_weight"), "scalar", k))
    return out


def _to_mskjax(array, kind):
    if kind == "conv":
        return array.transpose(*range(2, array.ndim), 1, 0)
    if kind == "transpose":
        return array.transpose(*range(2, array.ndim), 0, 1)
    if kind == "scalar":
        return array.reshape(())
    return array


def _to_torch(array, kind):
    if kind == "conv":
        return array.transpose(array.ndim - 1, array.ndim - 2, *range(array.ndim - 2))
    if kind == "transpose":
        return array.transpose(array.ndim - 2, array.ndim - 1, *range(array.ndim - 2))
    if kind == "scalar":
        return array.reshape(1)
    return array


def _variable(model, path):
    node = model
    for part in path:
        node = node[part] if isinstance(part, int) else getattr(node, part)
    return node


# -- reading the state dict --------------------------------------------------------------------

def _read(source):
    if isinstance(source, (str, os.PathLike)):
        try:
            import torch
        except ImportError as err:
            raise ImportError(f"{_FUNC}: reading {os.fspath(source)!r} needs PyTorch: "
                              "pip install torch (or load the file yourself and pass the state "
                              "dict as numpy arrays)") from err
        try:
            source = torch.load(os.fspath(source), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise
        except Exception as err:  # noqa: BLE001 - any unpickling failure names the file
            raise ValueError(
                f"{_FUNC}: cannot read {os.fspath(source)!r} as a PyTorch state dict with "
                f"torch.load(weights_only=True): {err}. If you trust the file, load it yourself "
                "with torch.load(path, weights_only=False) and pass the result") from err
    if not isinstance(source, Mapping):
        raise TypeError(f"{_FUNC}: expected a state dict (a mapping of names to arrays), a "
                        f"checkpoint dict with a 'state_dict' key, or a path, got "
                        f"{type(source).__name__}")
    state = source["state_dict"] if isinstance(source.get("state_dict"), Mapping) else source
    names = list(state)
    if _kind_of(names) is None and any(n.startswith(_PREFIXES) for n in names):
        # A Lightning module's state: keep the net's entries (its loss's buffers are not ours).
        prefix = next(p for p in _PREFIXES if any(n.startswith(p) for n in names))
        state = {n[len(prefix):]: v for n, v in state.items() if n.startswith(prefix)}
    return {str(n): _as_numpy(n, v) for n, v in state.items()}


def _as_numpy(name, value):
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except Exception as err:  # noqa: BLE001
        raise TypeError(f"{_FUNC}: {name!r} is not an array, got {type(value).__name__}") from err
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"{_FUNC}: {name!r} must hold floating-point weights, got {array.dtype}")
    return array.astype(np.float32, copy=False)


def _kind_of(names):
    if any(n.startswith(("sens_net.", "cascades.")) for n in names):
        return "varnet"
    if any(n.startswith(("down_sample_layers.", "up_conv.", "up_transpose_conv.")) for n in names):
        return "unet"
    return None


def _count(names, pattern):
    found = {int(m.group(1)) for n in names if (m := re.match(pattern, n))}
    return max(found) + 1 if found else 0


def _unet_config(state, prefix):
    anchor = prefix + _UNET_ANCHOR
    if anchor not in state:
        raise ValueError(f"{_FUNC}: missing keys ['{anchor}']: the configuration cannot be "
                         "inferred without it")
    chans, in_chans = state[anchor].shape[:2]
    pools = _count(state, re.escape(prefix) + r"down_sample_layers\.(\d+)\.")
    head = f"{prefix}up_conv.{pools - 1}.1.weight"
    out_chans = state[head].shape[0] if head in state else None
    return int(in_chans), out_chans, int(chans), pools


def _config(state):
    kind = _kind_of(state)
    if kind is None:
        shown = sorted(state)[:8]
        raise ValueError(
            f"{_FUNC}: not a fastMRI Unet or VarNet state dict: expected keys such as "
            f"'{_UNET_ANCHOR}' (Unet) or 'sens_net.norm_unet.unet.{_UNET_ANCHOR}' and "
            f"'cascades.0.dc_weight' (VarNet), got {len(state)} keys starting {shown}")
    if kind == "unet":
        in_chans, out_chans, chans, pools = _unet_config(state, "")
        if out_chans is None:
            raise ValueError(f"{_FUNC}: missing keys ['up_conv.{pools - 1}.1.weight']: the "
                             "output channels cannot be inferred without it")
        return kind, dict(in_chans=in_chans, out_chans=int(out_chans), chans=chans,
                          num_pool_layers=pools)
    _, _, sens_chans, sens_pools = _unet_config(state, "sens_net.norm_unet.unet.")
    _, _, chans, pools = _unet_config(state, "cascades.0.model.unet.")
    return kind, dict(num_cascades=_count(state, r"cascades\.(\d+)\."), sens_chans=sens_chans,
                      sens_pools=sens_pools, chans=chans, pools=pools)


def _check_names(state, entries, kind, config):
    expected = {e[0] for e in entries}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        def show(names):
            return f"{names[:10]}" + (f" and {len(names) - 10} more" if len(names) > 10 else "")
        name = "Unet" if kind == "unet" else "VarNet"
        raise ValueError(
            f"{_FUNC}: the state dict does not match a fastMRI {name} with {config}"
            f": missing keys {show(missing)}, unexpected keys {show(unexpected)}")


# -- public ------------------------------------------------------------------------------------

def load_fastmri(state_dict_or_path, *, rngs: nnx.Rngs | None = None, drop_prob: float = 0.0,
                 mask_center: bool = True) -> UNet | E2EVarNet:
    """A :class:`UNet` or :class:`E2EVarNet` holding a fastMRI PyTorch model's weights.

    Args:
        state_dict_or_path: the ``state_dict()`` of a ``fastmri.models.Unet`` or
            ``fastmri.models.VarNet`` (names to torch tensors or numpy arrays); a checkpoint
            dict with a ``'state_dict'`` key (PyTorch Lightning: the ``varnet.`` / ``unet.``
            prefix is stripped and the module's other entries, e.g. its loss's buffers, are
            ignored); or the path of a ``.pt`` / ``.pth`` file holding either, read with
            ``torch.load(weights_only=True)`` (needs PyTorch).
        rngs: ``nnx.Rngs`` for the dropout streams of a U-Net with ``drop_prob > 0``
            (keyword-only); default ``nnx.Rngs(0)``.
        drop_prob: the U-Net's dropout probability (not stored in a state dict).
        mask_center: the VarNet's ``mask_center`` (not stored in a state dict).

    Returns:
        The net, configured from the names and shapes (U-Net: ``in_chans``, ``out_chans``,
        ``chans``, ``num_pool_layers``; VarNet: ``num_cascades``, ``sens_chans``,
        ``sens_pools``, ``chans``, ``pools``). Its outputs equal the PyTorch model's in
        ``eval()`` mode to float32 round-off.

    Raises:
        ValueError: not a fastMRI Unet / VarNet state dict, missing or unexpected keys (named),
            or a weight of the wrong shape.
        ImportError: a path was given and PyTorch is not installed.
    """
    state = _read(state_dict_or_path)
    kind, config = _config(state)
    entries = _entries(kind, config)
    _check_names(state, entries, kind, config)
    rngs = nnx.Rngs(0) if rngs is None else rngs
    if kind == "unet":
        def build(r):
            return UNet(config["in_chans"], config["out_chans"], chans=config["chans"],
                        num_pool_layers=config["num_pool_layers"], drop_prob=drop_prob, rngs=r)
    else:
        def build(r):
            return E2EVarNet(**config, mask_center=mask_center, rngs=r)
    with shapes_only():  # the weights come from the state dict: nothing to draw
        model = build(rngs)
    stacked = {}
    for name, path, layout, index in entries:
        value = _to_mskjax(state[name], layout)
        if index is None:
            _set(model, path, value, name)
        else:
            stacked.setdefault(path, []).append((name, value))
    for path, values in stacked.items():
        shapes = {v.shape for _, v in values}
        if len(shapes) > 1:
            raise ValueError(f"{_FUNC}: the cascades' weights differ in shape: "
                             f"{[(n, tuple(v.shape)) for n, v in values]}")
        _set(model, path, np.stack([v for _, v in values]), values[0][0])
    left = [p for p, v in nnx.iter_graph(model)
            if isinstance(v, nnx.Variable) and isinstance(v.get_value(), jax.ShapeDtypeStruct)]
    if left:  # the name table and the net disagree: a defect here, not in the input
        raise RuntimeError(f"{_FUNC}: no weights were loaded for {left}")
    return model


def _set(model, path, value, name):
    variable = _variable(model, path)
    expected = tuple(variable.get_value().shape)
    if value.shape != expected:
        raise ValueError(f"{_FUNC}: {name!r} has shape {tuple(np.shape(value))} after conversion, "
                         f"the net expects {expected}")
    variable.set_value(jax.device_put(np.ascontiguousarray(value)))


def to_fastmri_state_dict(model: UNet | E2EVarNet) -> dict[str, np.ndarray]:
    """The PyTorch state dict of ``model`` (numpy float32 arrays; ``torch.from_numpy`` each
    for ``load_state_dict``), the inverse of :func:`load_fastmri`."""
    if isinstance(model, UNet) and model.ndim == 2:
        entries = _entries("unet", dict(num_pool_layers=model.num_pool_layers))
    elif isinstance(model, E2EVarNet):
        entries = _entries("varnet", dict(num_cascades=model.num_cascades,
                                          sens_pools=model.sens_pools, pools=model.pools))
    else:
        raise TypeError("mskjax.nets.to_fastmri_state_dict: expected a 2D UNet or an E2EVarNet, "
                        f"got {type(model).__name__}")
    out = {}
    for name, path, layout, index in entries:
        value = np.asarray(_variable(model, path).get_value())
        value = _to_torch(value if index is None else value[index], layout)
        out[name] = np.array(value, order="C")  # a writable copy, as torch.from_numpy wants
    return out
