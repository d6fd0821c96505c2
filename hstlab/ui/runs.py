"""Which run folders a served explorer session may read (Load run) and write (model cards).

A served explorer takes paths from any browser, so it never opens what a path names outside
its folders: the session's own runs folder (``$HSTLAB_RUNS/<session id>``, where the Train tab
writes) and the read-only folders listed in ``$HSTLAB_EXPLORER_RUNS`` (``os.pathsep``
separated, e.g. ``runs`` for the runs of ``hstlab train``). Paths are resolved (``..`` and
symlinks followed) before the check; ``~`` is not expanded. Every refused path gets the same
message, so a refusal never tells whether something exists there or what it is.

Example:
    >>> folders = RunFolders(own=Path("/srv/runs/session-1"))
    >>> folders.resolve("/etc/passwd")
    Traceback (most recent call last):
    ...
    hstlab.ui.runs.RunRefused: run_dir='/etc/passwd' is not in a runs folder this explorer may read; ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SHARED_RUNS_ENV = "HSTLAB_EXPLORER_RUNS"
RUN_HOLDS = (
    "a run directory (written by hstlab train or the Train tab) holds config.json, best.safetensors, "
    "last.safetensors, metrics.json and run.json"
)
MAX_SHOWN = 80  # characters of a typed path repeated in a message


def shared_runs_dirs() -> tuple[Path, ...]:
    """The read-only run folders of ``$HSTLAB_EXPLORER_RUNS`` (none when unset)."""
    text = os.environ.get(SHARED_RUNS_ENV, "")
    return tuple(Path(part) for part in text.split(os.pathsep) if part.strip())


def shown(text: str) -> str:
    """A typed path as messages repeat it (cut to :data:`MAX_SHOWN` characters)."""
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def inside(path: Path, root: Path) -> bool:
    """True when the resolved ``path`` is ``root`` or lies below it (both resolved)."""
    return path.resolve() == root.resolve() or root.resolve() in path.resolve().parents


class RunRefused(ValueError):
    """A path outside the folders a session may use (the message never says what is there)."""


@dataclass(frozen=True)
class RunFolders:
    """The folders of one session: ``own`` (read and write) and ``shared`` (read only)."""

    own: Path
    shared: tuple[Path, ...] = ()

    @property
    def readable(self) -> tuple[Path, ...]:
        return (self.own, *self.shared)

    def describe(self) -> str:
        """``'this session's runs (name) or runs'``: where Load run looks, for messages."""
        extra = "".join(f", {p}" for p in self.shared)
        return f"this session's runs ({self.own.name}){extra}"

    def refuse(self, text: str) -> RunRefused:
        return RunRefused(
            f"run_dir={shown(text)} is not in a runs folder this explorer may read; it loads "
            f"runs from {self.describe()}; {RUN_HOLDS}"
        )

    def resolve(self, text: str) -> Path:
        """The resolved path ``text`` names inside a readable folder (relative paths are looked up
        in each folder, then in the working directory).

        Raises :class:`RunRefused` for anything else: ``~``, absolute paths elsewhere, ``..`` or
        symlinks leading out.
        """
        text = str(text).strip()
        if not text or text.startswith("~") or "\x00" in text:
            raise self.refuse(text)
        path = Path(text)
        candidates = [path] if path.is_absolute() else [*(r / path for r in self.readable), path]
        first_inside = None
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
                present = os.path.lexists(candidate)
            except (OSError, RuntimeError, ValueError):  # symlink loops, too long names
                raise self.refuse(text) from None
            ok = any(inside(resolved, root) for root in self.readable)
            if present:  # the first thing that is there decides (a link leading out: refused)
                if not ok:
                    raise self.refuse(text)
                return resolved
            if ok and first_inside is None:
                first_inside = resolved
        if first_inside is None:
            raise self.refuse(text)
        return first_inside  # nothing there: "does not exist" is about an allowed folder

    def readable_path(self, path: Path | str) -> bool:
        """True when ``path`` (symlinks followed) lies inside a readable folder."""
        try:
            return any(inside(Path(path), root) for root in self.readable)
        except (OSError, RuntimeError):
            return False

    def writable(self, path: Path | str) -> bool:
        """True when a file may be written in ``path`` (inside the session's own folder)."""
        try:
            return inside(Path(path), self.own)
        except (OSError, RuntimeError):
            return False
