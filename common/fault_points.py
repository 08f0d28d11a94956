"""Named points in the save code where a test can pause the process, to kill it there.

Why: the promise that a kill, a crash or a power cut never loses a saved checkpoint
is tested by killing training at the worst moments: between a checkpoint's files
and the index that makes it count, in the middle of the replay memory's file, while
a CSV row is written. A test sets ``DQN_PAUSE_AT`` to a point's name; the process
then prints ``paused at <name>`` on stderr when it gets there and sleeps, so the
test can kill it at that exact place. Unset, as in every real run, a point costs
one dictionary lookup.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_SECONDS = 600.0
"""How long a paused process waits for the test to kill it."""


def pause_point(name: str) -> None:
    """Pauses here if the environment variable ``DQN_PAUSE_AT`` names this point.

    Args:
        name: the point's name, e.g. ``"checkpoint-written"``.
    """
    if os.environ.get("DQN_PAUSE_AT") == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(PAUSE_SECONDS)
