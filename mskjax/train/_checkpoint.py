"""Checkpoints of a TrainState with orbax-checkpoint, with the run's configuration beside it.

Layout: one folder per saved step under the checkpoint directory, ``<dir>/<step>/`` with the
arrays (``state/``, orbax's format), the configuration (``config/config.json``) and what is
needed to rebuild the state (``meta/meta.json``: the PRNG implementation of the key).

Writes are atomic: orbax writes a step into ``<dir>/<step>.orbax-checkpoint-tmp*`` and renames
the finished folder to ``<dir>/<step>`` (one rename on a local file system), so a write that is
interrupted (a crash, a killed process) leaves only a temporary folder, which readers ignore and
the next :func:`save_checkpoint` removes; the previous checkpoints stay restorable. The last
``keep`` steps are kept; older ones are deleted after a successful save.

In a multi-process run (``jax.distributed``) every process calls :func:`save_checkpoint` and
:func:`restore_checkpoint` with the same arguments: orbax writes each replicated array once
(its replica-parallel writing shares the array's slices out among the processes that hold
a replica, each process writing its part under ``state/ocdbt.process_<i>``; the JSON entries
come from process 0) and renames the finished folder once,
and every process waits at a barrier before the save and after it, so that no process reads a
checkpoint before it is complete. ``meta.json`` records the mesh the state was placed on (axis
names and sizes, devices, processes, the partition specs of sharded leaves). A replicated state
restores on any number of processes or devices (a checkpoint of 2 processes into 1 and back);
a target placed on a mesh with other axis names, or with other partition specs, is refused as
a checkpoint from another mesh. Checkpoints without the mesh entry restore as before.

The configuration is a JSON object with a ``"model"`` entry, ``{"name": <architecture>,
"kwargs": {<constructor keyword arguments>}}``, and any other entries (training settings), so a
checkpoint says what to build before restoring into it::

    config = read_checkpoint_config(ckpt)
    model = build(config["model"]["name"], **config["model"]["kwargs"])   # the caller's registry
    graphdef, params, rest = split_model(model)
    target = init_train_state(params, optimizer, key=config["train"]["seed"])
    state, config = restore_checkpoint(ckpt, target=target, model=config["model"])
"""

from __future__ import annotations

import json
import numbers
import os
from collections.abc import Mapping
from pathlib import Path

import jax
import numpy as np

from ._gan import GANState
from ._state import TrainState

#: The state types a checkpoint holds: a TrainState, or a GANState (its fields plus the
#: discriminator's parameters and optimiser state).
_STATES = (TrainState, GANState)


def check_state(state, func: str):
    if not isinstance(state, _STATES):
        raise TypeError(f"{func}: state must be a mskjax.train.TrainState (from "
                        f"init_train_state) or a GANState, got {type(state).__name__}")

_FORMAT = 1


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError as err:
        raise ImportError("mskjax.train checkpoints need orbax-checkpoint: pip install "
                          "orbax-checkpoint", name="orbax.checkpoint") from err
    return ocp


def _manager(directory: Path, *, keep: int | None = None, read_only: bool = False):
    ocp = _ocp()
    # Readers open the folder without orbax's read-only mode (which logs a warning at every
    # open) but with nothing that writes: no creation, no clean-up, no deletion.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else keep, create=not read_only,
        enable_async_checkpointing=False, cleanup_tmp_directories=not read_only)
    handlers = {"state": ocp.StandardCheckpointHandler(),
                "config": ocp.JsonCheckpointHandler(filename="config.json"),
                "meta": ocp.JsonCheckpointHandler(filename="meta.json")}
    return ocp.CheckpointManager(directory, options=options, item_handlers=handlers)


def _directory(directory, func) -> Path:
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"{func}: directory must be a path, got {type(directory).__name__}")
    return Path(directory).expanduser().absolute()


def _check_config(config, func) -> dict:
    """The configuration validated and normalised by a JSON round trip (tuples become lists)."""
    if not isinstance(config, Mapping):
        raise TypeError(f"{func}: config must be a dict, got {type(config).__name__}")
    model = config.get("model")
    if not (isinstance(model, Mapping) and isinstance(model.get("name"), str)
            and isinstance(model.get("kwargs"), Mapping)):
        raise ValueError(f"{func}: config must have a 'model' entry {{'name': str, 'kwargs': "
                         f"dict}} (the architecture and its constructor arguments), got "
                         f"{model!r}")
    try:
        text = json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{func}: config must be JSON-serialisable (str keys; str, finite "
                         f"number, bool, None, list and dict values): {err}") from None
    return json.loads(text)


def _steps(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    manager = _manager(directory, read_only=True)
    try:
        return sorted(manager.all_steps())
    finally:
        manager.close()


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest complete checkpoint's step in ``directory``, or ``None`` if there is none.

    Interrupted writes (orbax's temporary folders) are not counted.
    """
    steps = _steps(_directory(directory, "mskjax.train.latest_step"))
    return steps[-1] if steps else None


def _sync(name: str):
    """A barrier of all processes (nothing on one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _spec_json(spec) -> list:
    return [entry if entry is None or isinstance(entry, str) else list(entry)
            for entry in spec]


def _mesh_meta(tree) -> dict:
    """The mesh of ``tree``'s arrays (from their NamedSharding) and the partition specs of
    its sharded leaves by dotted path; ``axis_names`` is None for arrays on one device."""
    from jax.sharding import NamedSharding
    mesh, sharded = None, {}
    for path, leaf in _flat_by_path(tree).items():
        sharding = getattr(leaf, "sharding", None)
        if not isinstance(sharding, NamedSharding):
            continue
        mesh = mesh or sharding.mesh
        if any(entry is not None for entry in sharding.spec):
            sharded[".".join(path)] = _spec_json(sharding.spec)
    return {"axis_names": None if mesh is None else [str(a) for a in mesh.axis_names],
            "axis_sizes": None if mesh is None else [int(n) for n in mesh.devices.shape],
            "num_devices": None if mesh is None else int(mesh.size),
            "num_processes": int(jax.process_count()), "sharded": sharded}


def _describe_mesh(mesh: dict) -> str:
    if mesh.get("axis_names") is None:
        return f"single devices ({mesh.get('num_processes')} processes)"
    axes = ", ".join(f"{a!r}: {n}" for a, n in zip(mesh["axis_names"], mesh["axis_sizes"]))
    specs = "; ".join(f"{k} {v}" for k, v in sorted(mesh.get("sharded", {}).items())[:4])
    more = " and more" if len(mesh.get("sharded", {})) > 4 else ""
    return (f"mesh {{{axes}}} over {mesh.get('num_processes')} processes, "
            + (f"sharded leaves {specs}{more}" if specs else "all leaves replicated"))


def _check_mesh_fits(saved: dict | None, target: dict, where: str, func: str):
    """A target on a mesh with other axis names or partition specs than the checkpoint's is
    refused; other device or process counts with the same layout are fine."""
    if not saved or saved.get("axis_names") is None or target["axis_names"] is None:
        return
    if (saved["axis_names"] != target["axis_names"]
            or saved.get("sharded", {}) != target["sharded"]):
        raise ValueError(f"{func}: {where} is a checkpoint from another mesh: saved on "
                         f"{_describe_mesh(saved)}; the target is on {_describe_mesh(target)}. "
                         "Place the target like the saved state (mskjax.train.replicate on a "
                         "mesh with the same axis names), or restore without a target")


def save_checkpoint(directory: str | os.PathLike, state: TrainState, *, config: Mapping,
                    step: int | None = None, keep: int = 3) -> Path:
    """Write ``state`` and ``config`` as the checkpoint of ``step``, atomically.

    Args:
        directory: the run's checkpoint folder (created if missing); each step is a subfolder.
        state: the :class:`TrainState` (or :class:`GANState`) to save (its arrays are read,
            not changed).
        config: JSON-serialisable dict with a ``"model"`` entry ``{"name": str, "kwargs":
            dict}`` and any training settings (keyword-only); stored beside the arrays.
        step: the checkpoint's step (keyword-only); default ``int(state.step)``. It must be
            newer than every checkpoint already in ``directory`` (so that ``latest_step`` is the
            one written last); delete newer ones first to branch from an older step.
        keep: how many of the newest checkpoints to keep (keyword-only), ``>= 1``.

    Returns:
        The folder of the new checkpoint.
    """
    func = "mskjax.train.save_checkpoint"
    directory = _directory(directory, func)
    check_state(state, func)
    config = _check_config(config, func)
    if step is None:
        step = int(np.asarray(jax.device_get(state.step)))
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"{func}: step must be a non-negative integer, got {step!r}")
    if isinstance(keep, bool) or not isinstance(keep, numbers.Integral) or keep < 1:
        raise ValueError(f"{func}: keep must be an integer >= 1, got {keep!r}")
    step = int(step)
    _sync(f"mskjax.train.save_checkpoint {directory} {step} start")
    existing = _steps(directory)
    if existing and step <= existing[-1]:
        raise ValueError(f"{func}: step {step} is not newer than the latest checkpoint "
                         f"{existing[-1]} in {directory}; delete the newer checkpoints to "
                         "continue from an older one, or use another directory")
    ocp = _ocp()
    tree = {**state._asdict(), "key": jax.random.key_data(state.key)}
    meta = {"format": _FORMAT, "key_impl": str(jax.random.key_impl(state.key)), "step": step,
            "mesh": _mesh_meta(tree)}
    manager = _manager(directory, keep=int(keep))
    try:
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(tree), config=ocp.args.JsonSave(config),
            meta=ocp.args.JsonSave(meta)), force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    _sync(f"mskjax.train.save_checkpoint {directory} {step} done")
    return directory / str(step)


def _resolve_step(directory: Path, step, func) -> int:
    if not directory.is_dir():
        raise FileNotFoundError(f"{func}: checkpoint directory {directory} does not exist")
    steps = _steps(directory)
    if not steps:
        raise FileNotFoundError(f"{func}: no complete checkpoint in {directory}")
    if step is None:
        return steps[-1]
    if step not in steps:
        raise FileNotFoundError(f"{func}: no checkpoint of step {step!r} in {directory}; it has "
                                f"steps {steps}")
    return int(step)


def _read_json(directory: Path, step: int) -> tuple[dict, dict]:
    ocp = _ocp()
    manager = _manager(directory, read_only=True)
    try:
        out = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore(),
                                                              meta=ocp.args.JsonRestore()))
    finally:
        manager.close()
    return out.config, out.meta


def read_checkpoint_config(directory: str | os.PathLike, *, step: int | None = None) -> dict:
    """The configuration saved with a checkpoint (default the latest), without its arrays."""
    func = "mskjax.train.read_checkpoint_config"
    directory = _directory(directory, func)
    return _read_json(directory, _resolve_step(directory, step, func))[0]


def _model_differences(saved: Mapping, expected: Mapping) -> list[str]:
    saved = json.loads(json.dumps(saved))
    expected = json.loads(json.dumps(expected))
    out = []
    if saved.get("name") != expected.get("name"):
        out.append(f"name: checkpoint {saved.get('name')!r}, expected {expected.get('name')!r}")
    a, b = saved.get("kwargs", {}), expected.get("kwargs", {})
    for name in sorted(set(a) | set(b)):
        if name not in b:
            out.append(f"kwargs.{name}: checkpoint {a[name]!r}, expected not given")
        elif name not in a:
            out.append(f"kwargs.{name}: checkpoint not given, expected {b[name]!r}")
        elif a[name] != b[name]:
            out.append(f"kwargs.{name}: checkpoint {a[name]!r}, expected {b[name]!r}")
    return out


def _flat_by_path(tree) -> dict:
    """``{path: leaf}`` with orbax's string path keys; empty nodes (an optimiser's
    ``EmptyState``) simply have no leaves, where orbax's ``serialize_tree`` fails on them."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        key = []
        for entry in path:
            if isinstance(entry, jax.tree_util.DictKey):
                key.append(str(entry.key))
            elif isinstance(entry, jax.tree_util.SequenceKey):
                key.append(str(entry.idx))
            elif isinstance(entry, jax.tree_util.GetAttrKey):
                key.append(entry.name)
            else:
                key.append(str(entry))
        flat[tuple(key)] = leaf
    return flat


def _tree_differences(saved_tree, target_tree, field_names=TrainState._fields) -> list[str]:
    """Leaves missing on either side, and shapes or dtypes that differ, by dotted path."""
    ocp = _ocp()
    saved = ocp.tree.to_flat_dict(saved_tree)
    wanted = _flat_by_path(target_tree)
    saved = {k: v for k, v in saved.items() if v is not None}
    fields = {name: i for i, name in enumerate(field_names)}
    out = []
    for path in sorted(set(saved) | set(wanted),
                       key=lambda p: (fields.get(p[0], len(fields)), tuple(map(str, p)))):
        name = ".".join(map(str, path))
        if path not in wanted:
            out.append(f"{name}: in the checkpoint, not in the target")
        elif path not in saved:
            out.append(f"{name}: in the target, not in the checkpoint")
        else:
            s, w = saved[path], wanted[path]
            s_shape, w_shape = tuple(s.shape), tuple(np.shape(w))
            s_dtype, w_dtype = np.dtype(s.dtype), np.dtype(w.dtype)
            if s_shape != w_shape or s_dtype != w_dtype:
                out.append(f"{name}: checkpoint {s_shape} {s_dtype}, target {w_shape} {w_dtype}")
    return out


def _listing(lines: list[str], limit: int = 12) -> str:
    more = f"; and {len(lines) - limit} more" if len(lines) > limit else ""
    return "; ".join(lines[:limit]) + more


def restore_checkpoint(directory: str | os.PathLike, *, target: TrainState | None = None,
                       step: int | None = None,
                       model: Mapping | None = None) -> tuple[TrainState, dict]:
    """Read a checkpoint (default the latest) and its configuration.

    Args:
        directory: the checkpoint folder given to :func:`save_checkpoint`.
        target: a :class:`TrainState` of the model and optimiser to restore into (keyword-only),
            e.g. ``init_train_state`` of a freshly built model: its structure, shapes, dtypes
            and shardings are used, and every difference from the checkpoint (another
            architecture or configuration, another optimiser) raises a ValueError that names
            the differing leaves; so does a target placed on a mesh with other axis names
            or partition specs than the saved state (another device or process count is
            fine). ``None`` restores the raw saved trees onto this process's first device
            (nested dicts; an ``nnx.Param`` is ``{"value": array}``).
        step: which checkpoint (keyword-only); default the latest complete one.
        model: the expected ``config["model"]`` (keyword-only); if given, a checkpoint of
            another architecture name or constructor kwargs raises a ValueError naming them.

    Returns:
        ``(state, config)``: the restored :class:`TrainState` (a :class:`GANState` for a GAN
        checkpoint) and the saved configuration.
    """
    func = "mskjax.train.restore_checkpoint"
    directory = _directory(directory, func)
    if target is not None:
        check_state(target, func)
    step = _resolve_step(directory, step, func)
    config, meta = _read_json(directory, step)
    where = f"the checkpoint {directory / str(step)}"
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{func}: {where} has format {meta.get('format')!r}, this version "
                         f"reads format {_FORMAT}")
    if model is not None:
        differences = _model_differences(config["model"], model)
        if differences:
            raise ValueError(f"{func}: {where} holds another model: {_listing(differences)}")
    ocp = _ocp()
    manager = _manager(directory, read_only=True)
    try:
        if target is None:
            # Onto this process's first device: the saved shardings name the devices of the
            # run that wrote it, which another process or device count does not have.
            saved = manager.item_metadata(step).state
            single = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            args = ocp.args.StandardRestore(jax.tree_util.tree_map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=single),
                getattr(saved, "tree", saved)))
        else:
            target_impl = str(jax.random.key_impl(target.key))
            if target_impl != meta["key_impl"]:
                raise ValueError(f"{func}: {where} has a {meta['key_impl']} key, the target a "
                                 f"{target_impl} key")
            tree = {**target._asdict(), "key": jax.random.key_data(target.key)}
            _check_mesh_fits(meta.get("mesh"), _mesh_meta(tree), where, func)
            saved = manager.item_metadata(step).state
            differences = _tree_differences(getattr(saved, "tree", saved), tree,
                                            type(target)._fields)
            if differences:
                model_name = config["model"]["name"]
                raise ValueError(
                    f"{func}: {where} (model {model_name!r} with kwargs "
                    f"{config['model']['kwargs']}) does not fit the target: "
                    f"{_listing(differences)}")
            args = ocp.args.StandardRestore(tree)
        restored = manager.restore(step, args=ocp.args.Composite(state=args)).state
    finally:
        manager.close()
    fields = dict(restored)
    fields["key"] = jax.random.wrap_key_data(fields["key"], impl=meta["key_impl"])
    kind = type(target) if target is not None else (
        GANState if "discriminator_params" in fields else TrainState)
    missing = set(kind._fields) - set(fields)
    if missing:
        raise ValueError(f"{func}: {where} lacks the state fields {sorted(missing)}")
    return kind(**{name: fields[name] for name in kind._fields}), config

