"""The settings of a local development checkout: `make run` writes them once to var/local.env
(DEBUG=1 and a SECRET_KEY of the checkout's own), and core/settings.py reads that file when it
exists, so that the README's manage.py commands work in that checkout as written.

Never in production: the file exists only where `make run` ran (var/ is neither committed nor
copied into the Docker image), the environment's own variables win over it, and a process that
takes settings from it says so on stderr. The Makefile writes it before anything reads settings:
`python -m core.localenv var/local.env`.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import environ

HEADER = """\
# Local development settings of this checkout, written by `make run` (core/localenv.py).
# core/settings.py reads them whenever this file exists; the environment's variables win.
# Never commit it or copy it to a server. Delete it to have new ones written.
"""


def contents() -> str:
    return f"{HEADER}DEBUG=1\nSECRET_KEY={secrets.token_urlsafe(50)}\n"


def write(path: Path) -> bool:
    """Write the file, readable by its owner only, unless it exists; whether it was written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(contents())
    return True


def load(path: Path) -> list[str]:
    """Set the variables of the file that the environment lacks, if the file exists, and say
    which on stderr; their names. A process started by one that loaded it (gunicorn and the
    cluster under `make run`) inherits them, so it finds nothing to set and says nothing."""
    if not path.is_file():
        return []
    before = set(os.environ)
    environ.Env.read_env(path)  # sets only what the environment lacks
    names = sorted(set(os.environ) - before)
    if names:
        sys.stderr.write(
            f"Local development settings {', '.join(names)} from {path} "
            "(written by `make run`; README, 'make run').\n"
        )
    return names


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if write(target):
        print(f"Wrote this checkout's development settings (DEBUG=1, a SECRET_KEY) to {target}.")
