"""Child processes the tests start and stop."""
from __future__ import annotations

import signal


def ctrl_c_enabled() -> None:
    """`preexec_fn` for a child a test stops with SIGINT (Ctrl-C).

    A shell that starts a job in the background (`cmd &`) makes it ignore SIGINT, and children inherit
    that; the child must see Ctrl-C however the test run was started.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)
