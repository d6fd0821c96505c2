"""Which failures are the user's to fix, in one place.

The command line prints these as one line and exits 2; anything else is an internal bug and
keeps its traceback. User errors: bad values (``ValueError``, including
:class:`~hstlab.train.checkpoint.CheckpointError` and JSON errors), missing or clashing files
(``FileNotFoundError`` incl. ``DatasetUnavailable``, ``FileExistsError`` incl. ``RunDirExists``,
``NotADirectoryError``, ``IsADirectoryError``, ``PermissionError``), a full or read-only disk,
a corrupt pickle, and a run that diverged (``TrainingDiverged``: fix the learning rate).
"""

from __future__ import annotations

import errno
import pickle

USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
    pickle.UnpicklingError,
)
# OSError numbers that mean "your disk / your path", not "our code"
USER_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENAMETOOLONG,
                         errno.ENOENT, errno.EEXIST, errno.EISDIR, errno.ENOTDIR, errno.ELOOP})


def user_error_types() -> tuple[type[BaseException], ...]:
    """:data:`USER_ERRORS` plus ``TrainingDiverged`` and a missing optional package (imported here,
    on first use)."""
    from hstlab._optional import MissingDependency
    from hstlab.train.events import TrainingDiverged

    return (*USER_ERRORS, TrainingDiverged, MissingDependency)


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` is bad input, a bad file or a full disk (see the module docstring).

    Example:
        >>> is_user_error(ValueError("lr=nan")), is_user_error(OSError(errno.ENOSPC, "disk full"))
        (True, True)
        >>> is_user_error(KeyError("bug")), is_user_error(RuntimeError("bug"))
        (False, False)
    """
    if isinstance(exc, user_error_types()):
        return True
    return isinstance(exc, OSError) and exc.errno in USER_ERRNOS


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (multi-line messages are joined with spaces).

    Example:
        >>> one_line(FileNotFoundError("dataset 'x' is not available.\\nPut the files there:\\n  a/b"))
        "dataset 'x' is not available. Put the files there: a/b"
    """
    text = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
    return text or type(exc).__name__
