"""Atomic output: write to temporary names beside the targets, rename only on success.

A writer that fails midway leaves neither a partial file nor a changed target behind, and the
temporary files are removed. The temporary files are created with mode ``0o666`` less the
umask, so the finished files get the permissions an ordinary ``open(path, "w")`` gives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _create_beside(target: Path) -> Path:
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
        os.close(fd)
        return tmp
    raise FileExistsError(f"cannot create a temporary file beside {target}")


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path beside each of ``paths``; rename them onto ``paths`` on success.

    The renames happen in the order of ``paths`` once the body has finished without error.
    """
    targets = [Path(p) for p in paths]
    temps: list[Path] = []
    try:
        for target in targets:
            temps.append(_create_beside(target))
        yield tuple(temps)
        for tmp, target in zip(temps, targets):
            os.replace(tmp, target)
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
