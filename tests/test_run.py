"""Tests of common/run.py: the loop state's round trip and the run-folder rules."""

import json

import numpy as np
import pytest

from common.checkpoint import CheckpointError
from common.run import LoopState, open_run


def test_loop_state_round_trips_through_json():
    state = LoopState(step=1234, games=7, rng=np.random.default_rng(5))
    for score in (3.0, 11.0, 0.0):
        state.record_game(score)
    state.rng.random(10)  # move the generator on
    saved = json.loads(json.dumps(state.to_dict()))
    restored = LoopState.from_dict(saved)
    assert (restored.step, restored.games) == (1234, 10)
    assert list(restored.recent_scores) == [3.0, 11.0, 0.0]
    assert restored.recent_scores.maxlen == 100
    np.testing.assert_array_equal(restored.rng.random(5), state.rng.random(5))


def test_running_reward_and_the_solved_rule():
    state = LoopState()
    assert np.isnan(state.running_reward) and not state.solved(40)
    for _ in range(99):
        state.record_game(50.0)
    assert state.running_reward == 50.0 and not state.solved(40)  # the window is not full
    state.record_game(50.0)
    assert state.solved(40) and not state.solved(50.5)
    for _ in range(100):
        state.record_game(10.0)  # the window keeps the last 100 games only
    assert state.running_reward == 10.0 and state.games == 200


def test_open_run_refuses_what_would_lose_or_mix_runs(tmp_path, monkeypatch):
    checkpoint_dir = str(tmp_path / "run" / "checkpoints")
    assert open_run(checkpoint_dir, resume=False, env_id="BreakoutNoFrameskip-v4") is None
    with pytest.raises(CheckpointError, match="--resume: no checkpoint in"):
        open_run(checkpoint_dir, resume=True, env_id="BreakoutNoFrameskip-v4")
    saved = {"env_id": "BreakoutNoFrameskip-v4", "step": 10, "games": 1}
    monkeypatch.setattr("common.run.read_loop_state", lambda directory: saved)
    assert open_run(checkpoint_dir, resume=True, env_id="BreakoutNoFrameskip-v4") == saved
    with pytest.raises(CheckpointError, match="already holds a run; add --resume"):
        open_run(checkpoint_dir, resume=False, env_id="BreakoutNoFrameskip-v4")
    with pytest.raises(CheckpointError, match="holds a run of BreakoutNoFrameskip-v4, not Pong"):
        open_run(checkpoint_dir, resume=True, env_id="PongNoFrameskip-v4")
