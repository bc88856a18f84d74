"""Observing unreadable directories while the tests run as root.

Root reads any directory (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a directory with mode 000 can
only be observed by a process without those capabilities: a real child process that drops them
from its bounding set before exec. Run as an ordinary user, the child needs no change."""

import contextlib
import json
import os
import subprocess
import sys
import textwrap


def _drop_permission_bypass() -> None:
    """In the child, before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from the bounding set."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
    for cap in (cap_dac_override, cap_dac_read_search):
        if libc.prctl(pr_capbset_drop, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_without_permission_bypass(script: str, *args: str) -> dict:
    """Run `script` in a real process that file permissions apply to; it prints one JSON line last."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True, text=True, timeout=60,
        preexec_fn=_drop_permission_bypass if os.geteuid() == 0 else None,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def unreadable(*paths):
    """chmod 000 the directories, and give their mode back so that tmp_path can be removed."""
    modes = {path: os.stat(path).st_mode & 0o7777 for path in paths}
    for path in paths:
        os.chmod(path, 0)
    try:
        yield
    finally:
        for path, mode in modes.items():
            os.chmod(path, mode)
