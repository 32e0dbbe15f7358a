"""Writing a file so that no reader, and no crash, ever sees half of it.

Here rather than in core because the panel's settings (ui/) and the packaging (plugin/) write
files too, and protocol is the standard-library layer all three share.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator


@contextmanager
def atomic_write(path: str | os.PathLike, private: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path` for the caller to write; when the block ends without
    an error it replaces `path` in one rename, otherwise it is deleted.

    The temporary name is unique per write, so two processes filling the same cache entry never
    write into one file. `private` creates it readable by the owner only before anything is
    written (the engine's port file holds its access token); otherwise a new file gets the usual
    mode (the umask's) and a replaced one keeps its own, as if it had been written in place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.part")
    try:
        if private:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        yield tmp
        if not private:
            with contextlib.suppress(FileNotFoundError):  # a new file keeps the umask's mode
                os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
