"""Atomic output: write to temporary names beside the targets, rename only on success.

A writer that fails midway leaves neither a partial file nor a changed target behind, and the
temporary files are removed. The temporary files are created with mode ``0o666`` less the
umask, so the finished files get the permissions an ordinary ``open(path, "w")`` gives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


def _create_beside(target: Path, func: str = "mskjax.io.atomic_path") -> Path:
    """Create an empty, uniquely named file in the folder of ``target`` and return its path.

    The name starts with a dot and ends with the target's full suffix (``.nii.gz``, not only
    ``.gz``), so a format library that looks at the suffix (nibabel does) sees the right one.
    """
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    stem = target.name[:len(target.name) - len(suffix)] if suffix else target.name
    for _ in range(100):
        tmp = target.with_name(f".{stem}.{secrets.token_hex(6)}.tmp{suffix}")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        except PermissionError as err:
            raise PermissionError(f"{func}: cannot write {target}: no permission to create "
                                  f"files in the folder {target.parent}") from err
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{func}: cannot write {target}: the folder "
                                    f"{target.parent} does not exist") from err
        os.close(fd)
        return tmp
    raise FileExistsError(f"{func}: cannot create a temporary file beside {target}")


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike,
                 func: str = "mskjax.io.atomic_path") -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path beside each of ``paths``; rename them onto ``paths`` on success.

    The renames happen in the order of ``paths`` once the body has finished without error.
    File-system errors name ``func`` and the target, never the temporary name.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            temps.append(_create_beside(target, func))
        yield tuple(temps)
        for tmp, target in zip(temps, targets):
            try:
                os.replace(tmp, target)
            except PermissionError as err:
                raise PermissionError(f"{func}: cannot write {target}: permission denied "
                                      f"({err.strerror})") from err
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield one temporary path beside ``path``; rename it onto ``path`` on success.

    For writing a file of one's own atomically, as mskjax's writers do: write to the yielded
    path; when the ``with`` body finishes without error the file replaces ``path`` (one
    ``os.replace``), and when it raises the temporary file is removed and ``path`` is left as
    it was (absent, or the old file). The temporary file is created empty in the folder of
    ``path`` (which must exist), with a dotted name ending in the suffix of ``path``
    (``.nii.gz`` kept whole), so format libraries that look at the suffix see the right one.

    Example::

        with mskjax.io.atomic_path("out/scores.json") as tmp:
            tmp.write_text(json.dumps(scores))

    Args:
        path: the target file (``str`` or path-like).

    Yields:
        the temporary :class:`pathlib.Path` to write to.
    """
    with atomic_paths(path) as (tmp,):
        yield tmp


def check_output_folder(out: str | os.PathLike, *, overwrite: bool, func: str) -> Path:
    """Check that ``out`` may receive a new set, before any slow work starts.

    The rule of every mskjax function and command that writes a folder: ``out`` must not exist,
    or be an empty folder, unless ``overwrite`` is true (then a previous folder is replaced as a
    whole once the new one is complete, never mixed with it). A file at ``out`` is refused
    always.
    """
    out = Path(out)
    if not isinstance(overwrite, bool):
        raise TypeError(f"{func}: overwrite must be True or False, got {overwrite!r}")
    if out.exists() and not out.is_dir():
        raise ValueError(f"{func}: output folder {out} exists and is a file")
    if out.is_dir() and not overwrite and any(out.iterdir()):
        held = " (it already holds a set)" if (out / "manifest.json").exists() else ""
        raise ValueError(f"{func}: output folder {out} is not an empty folder{held}; choose a "
                         "new folder or pass overwrite=True (--overwrite) to replace it")
    return out


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike, *, overwrite: bool, func: str) -> Iterator[Path]:
    """Yield a new temporary folder beside ``out``; it becomes ``out`` when the body succeeds.

    Checks ``out`` as :func:`check_output_folder` does. On success a previous ``out`` (an empty
    folder, or any folder with ``overwrite=True``) is moved aside, the temporary folder renamed
    onto ``out`` and the old one removed. When the body raises (Ctrl-C included) the temporary
    folder is removed and ``out`` is left as it was: no partial set is ever found under ``out``.
    """
    out = check_output_folder(out, overwrite=overwrite, func=func)
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except PermissionError as err:
        raise PermissionError(f"{func}: cannot create the output folder {out}: permission "
                              f"denied") from err
    except (FileExistsError, NotADirectoryError) as err:
        raise ValueError(f"{func}: cannot create the output folder {out}: a parent is a "
                         "file") from err
    tmp = parent / f".{out.name}.{secrets.token_hex(6)}.tmp"
    try:
        tmp.mkdir()
    except PermissionError as err:
        raise PermissionError(f"{func}: cannot write the output folder {out}: no permission "
                              f"to create folders in {parent}") from err
    old = None
    try:
        yield tmp
        out = check_output_folder(out, overwrite=overwrite, func=func)
        if out.exists():
            old = parent / f".{out.name}.{secrets.token_hex(6)}.old"
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old, out)
                old = None
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and old.exists():
            shutil.rmtree(old, ignore_errors=True)
