"""The command line of `breakout_dqn.py`, training on Catch: a fast stand-in for a run.

Why: the fault-injection test kills training many times at chosen moments and
resumes it; on Breakout each of those runs would take minutes. This runs the very
same `train()`, `Run`, checkpoints and logs, with `tests/catch_env.py`'s game and
small network, so a run of a few thousand steps takes seconds:

    python -m tests.catch_dqn --run-dir R --total-steps 3000 [--resume] ...
"""

import sys

import breakout_dqn
from common.cli import command_line, exit_with
from tests.catch_env import playing_catch

CATCH_DEFAULTS = ["--env-id", "Catch", "--solved-at", "2", "--video-every", "0",
                  "--learning-starts", "100", "--buffer-size", "2000", "--batch-size", "16",
                  "--target-update-every", "100", "--log-every-games", "100000"]

if __name__ == "__main__":
    with playing_catch(breakout_dqn):
        status = command_line(breakout_dqn.Config, breakout_dqn.train, breakout_dqn.evaluate,
                              "Catch DQN", CATCH_DEFAULTS + sys.argv[1:])
    exit_with(status)
