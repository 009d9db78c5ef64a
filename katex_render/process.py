"""The Chromium processes a renderer owns: launched here, so that their pids are known and
killable, and never left behind.

Each browser runs in its own process group (one ``killpg`` ends its renderers and
helpers too) and, on Linux, is killed by the kernel when the process that launched
it dies, even by SIGKILL. Its profile is a temporary folder named after the owning
process, so that the next renderer can remove the profiles of a process that was
killed (kill -9 runs no cleanup).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from katex_render.browser import launch_args
from katex_render.errors import KatexRenderError

PROFILE_PREFIX = "katex-render-"  # then "<owner pid>-<random>"


@dataclass
class ChromiumProcess:
    """A running headless Chromium: its process, profile folder and DevTools port."""

    proc: subprocess.Popen
    profile: Path
    port: int

    @property
    def pid(self) -> int | None:
        """The pid while the process runs, else None."""
        return self.proc.pid if self.proc.poll() is None else None

    async def end(self) -> None:
        """Kill the process group if it still runs, reap it, remove the profile."""
        await _end(self.proc, self.profile)


async def launch_chromium(executable: Path, timeout_s: float) -> ChromiumProcess:
    """Start ``executable`` headless on a DevTools port of its choosing; wait for the port.

    A browser that exits or does not announce its port within ``timeout_s`` is ended and
    is a KatexRenderError quoting the end of its log."""
    profile = Path(tempfile.mkdtemp(prefix=f"{PROFILE_PREFIX}{os.getpid()}-"))
    port_file = profile / "DevToolsActivePort"
    cmd = [str(executable), "--headless", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
           f"--user-data-dir={profile}", *launch_args(), "about:blank"]
    log = open(profile / "chromium.log", "wb")
    try:
        # Own process group (killpg ends renderers and helpers too); on Linux the
        # browser is also killed when this process dies, even by SIGKILL, so an
        # interrupted job leaves no browser behind.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                preexec_fn=die_with_parent())
    except BaseException:
        remove_profile(profile)
        raise
    finally:
        log.close()
    deadline = time.monotonic() + timeout_s
    while not port_file.exists() or not port_file.read_text().strip():
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = (profile / "chromium.log").read_bytes()[-600:].decode("utf-8", "replace")
            await _end(proc, profile)
            raise KatexRenderError(f"Chromium ({executable}) did not start: {tail.strip() or 'no output'}")
        await asyncio.sleep(0.02)
    return ChromiumProcess(proc, profile, int(port_file.read_text().split()[0]))


async def _end(proc: subprocess.Popen, profile: Path) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # its whole process group (renderers, gpu, zygote)
        except ProcessLookupError:
            pass
    await asyncio.get_running_loop().run_in_executor(None, proc.wait)
    remove_profile(profile)


def die_with_parent() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGKILL the child when its parent dies (else None)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved before fork: the hook only calls it
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def hook() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return hook


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (another user's counts: it cannot be signalled,
    but it runs)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_profiles(tmp_dir: str | Path | None = None) -> list[Path]:
    """Delete the browser profiles left by renderer processes that no longer run (a job
    killed with SIGKILL runs no cleanup). A profile whose owner still runs, or that
    belongs to another user, is left alone."""
    removed = []
    for path in Path(tmp_dir or tempfile.gettempdir()).glob(f"{PROFILE_PREFIX}*-*"):
        owner = path.name[len(PROFILE_PREFIX):].split("-", 1)[0]
        if not owner.isdigit() or int(owner) == os.getpid() or pid_alive(int(owner)):
            continue
        try:
            if path.lstat().st_uid != os.getuid() or not path.is_dir():
                continue
        except FileNotFoundError:
            continue  # another renderer removed it first
        remove_profile(path)
        removed.append(path)
    return removed


def remove_profile(profile: Path) -> None:
    """Delete a browser profile and the folder of Chromium's singleton socket, which
    Chromium makes in the temporary folder (``org.chromium.Chromium.*``; the socket's
    path is too long for a Unix socket inside the profile) and links from the profile."""
    try:
        socket_dir = Path(os.readlink(profile / "SingletonSocket")).parent
    except OSError:
        socket_dir = None  # never started, or already gone
    if socket_dir is not None and socket_dir.name.startswith("org.chromium.Chromium."):
        shutil.rmtree(socket_dir, ignore_errors=True)  # ignore_errors: removal may race another renderer's
    shutil.rmtree(profile, ignore_errors=True)
