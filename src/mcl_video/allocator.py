"""tcmalloc for the `mcl` command: CPU training steps are ~1.5x faster than with glibc's malloc.

`mcl` re-executes itself once with tcmalloc in ``LD_PRELOAD`` when the library is installed (Linux),
unless ``MCL_NO_TCMALLOC=1`` is set or the user already preloads a tcmalloc. The decision
(:func:`reexec_plan`) is a pure function of the environment and the library search, so it is tested
without tcmalloc; :func:`allocator_status` says what happened (recorded in a run's ``env.json``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

OPT_OUT = "MCL_NO_TCMALLOC"  # set (not "" or "0") to keep glibc's malloc
MARKER = "MCL_TCMALLOC_PRELOADED"  # set by the re-exec: the library it preloaded (stops a second re-exec)
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
DIRECTORIES = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
               "/usr/local/lib")


def find_tcmalloc(directories: Sequence[str] = DIRECTORIES) -> str | None:
    """Path of the first installed tcmalloc library, or ``None``."""
    for directory in directories:
        for name in LIBRARIES:
            path = Path(directory) / name
            if path.is_file():
                return str(path)
    return None


def _set(environ: Mapping[str, str], name: str) -> bool:
    return environ.get(name, "") not in ("", "0")


def reexec_plan(environ: Mapping[str, str], platform: str | None = None,
                find: Callable[[], str | None] | None = None) -> dict[str, str] | None:
    """The environment to re-execute `mcl` with, or ``None`` to run as is (``find``: the library
    search, :func:`find_tcmalloc` by default)."""
    if not (platform or sys.platform).startswith("linux") or _set(environ, OPT_OUT) or _set(environ, MARKER):
        return None
    preload = environ.get("LD_PRELOAD", "")
    if "tcmalloc" in preload:  # the user's own preload
        return None
    library = (find or find_tcmalloc)()
    if library is None:
        return None
    return {**environ, "LD_PRELOAD": f"{library}:{preload}" if preload else library, MARKER: library}


def allocator_status(environ: Mapping[str, str] = os.environ) -> str:
    """What this process runs with, for ``env.json``."""
    if _set(environ, MARKER) and environ.get(MARKER, "") in environ.get("LD_PRELOAD", ""):
        return f"tcmalloc (preloaded by mcl: {environ[MARKER]})"
    if "tcmalloc" in environ.get("LD_PRELOAD", ""):
        return "tcmalloc (LD_PRELOAD set by the user)"
    if _set(environ, OPT_OUT):
        return f"glibc malloc ({OPT_OUT} set)"
    return "glibc malloc"


def maybe_reexec(argv: Sequence[str]) -> None:
    """Replace this process by ``python -m mcl_video ARGV`` with tcmalloc preloaded, when planned."""
    env = reexec_plan(os.environ)
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "mcl_video", *argv], env)


# printed by a CPU training run that runs without tcmalloc
TCMALLOC_HINT = ("hint: CPU training is ~1.5x faster with tcmalloc (glibc malloc costs a third of a step): "
                 "apt-get install libgoogle-perftools4 and `mcl` preloads it "
                 "(MCL_NO_TCMALLOC=1 turns that off)")
