"""One process per run folder: an exclusive lock held while a run is read, trained and written.

Two copies of a command on one ``--logdir`` would otherwise train the same run at once, overwrite each
other's resume state and append to one history.csv. The lock is ``fcntl.flock`` on ``<run folder>/.lock``,
which the operating system releases when the process ends in any way (a kill included), so a stale lock
never blocks a rerun. The file holds the owner's process id, for the message of the copy that finds it taken.
"""

import contextlib
import fcntl
import os

from tfvit.errors import UserError

LOCK_FILE = ".lock"


class RunInUse(UserError):
    """The run folder is locked by another process."""


@contextlib.contextmanager
def run_lock(folder, label=None):
    """Hold the lock of run ``folder`` for the ``with`` block; raise RunInUse at once if another process holds
    it (the message names the run, ``label`` or the folder, and that process's id)."""
    path = os.path.join(folder, LOCK_FILE)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunInUse(
                f"run {label or folder} is in use by pid {owner} (another copy of this command?): wait for it "
                f"to finish, or stop it, then run the command again."
            ) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(descriptor, 0)
            fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)
