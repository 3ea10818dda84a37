"""Small file-system helpers shared by every writer of outputs."""
from __future__ import annotations

import os
import tempfile


def atomic_write(path: str, write_fn):
    """Call ``write_fn(tmp_path)`` and rename the result to ``path``: a crash never leaves a
    half-written file under the final name. Creates the parent folder."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp_", suffix=os.path.splitext(path)[1])
    os.close(fd)
    try:
        write_fn(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
