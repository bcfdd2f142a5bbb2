"""The host directory a program runs in under the unshare fallback: made, owned, and removed."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from crucible_executor.sandbox import Identity


def make_workdir(file_name: str, code: bytes, identity: Identity) -> str:
    workdir = tempfile.mkdtemp(prefix="crucible-run-")
    path = os.path.join(workdir, file_name)
    with open(path, "wb") as handle:
        handle.write(code)
    if identity.dedicated:
        os.chown(workdir, identity.uid, identity.gid)
        os.chown(path, identity.uid, identity.gid)
    return workdir


def remove_tree(path: str) -> None:
    """Remove a run's directory even where the program took its own permissions away."""

    def allow_and_retry(function, failed_path, _exc_info) -> None:
        os.chmod(os.path.dirname(failed_path), 0o700)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(failed_path) and not os.path.islink(failed_path):
                os.chmod(failed_path, 0o700)
                shutil.rmtree(failed_path, onerror=allow_and_retry)
            else:
                function(failed_path)

    shutil.rmtree(path, onerror=allow_and_retry)
