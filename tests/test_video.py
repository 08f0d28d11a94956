"""Tests of common/video.py on the real emulator: decodable MP4s, naming, full disks."""

import errno
import os
import re

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from common.atari import make_env
from common.video import GameRecorder


def play_games(env, games, seed=0):
    env.reset(seed=seed)
    finished = 0
    rng = np.random.default_rng(seed)
    while finished < games:
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            env.reset()
        finished += "episode" in info


def recorder_of(env):
    while not isinstance(env, GameRecorder):
        env = env.env
    return env


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_every_second_game_is_a_decodable_mp4_named_with_its_score(tmp_path):
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(tmp_path), video_every=2,
                   max_frames_per_game=2_000)
    play_games(env, 4)
    env.close()
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 2, names
    assert re.fullmatch(r"breakout_game000002_score-?\d+\.mp4", names[0]), names
    assert re.fullmatch(r"breakout_game000004_score-?\d+\.mp4", names[1]), names
    reader = imageio.get_reader(str(tmp_path / names[0]))
    frame = reader.get_data(0)
    frames = reader.count_frames()
    reader.close()
    assert frame.shape == (210, 160, 3)
    assert frames > 100  # a whole game at 60 frames a second, not one frame per agent step


def test_first_game_carries_the_numbering_on(tmp_path):
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(tmp_path), video_every=1,
                   first_game=41, max_frames_per_game=600)
    play_games(env, 1)
    env.close()
    assert [name[:25] for name in os.listdir(tmp_path)] == ["breakout_game000041_score"]


def test_frames_are_read_only_for_recorded_games(tmp_path, monkeypatch):
    env = GameRecorder(gym.make("BreakoutNoFrameskip-v4"), str(tmp_path), every=3, name_prefix="b")
    calls = []
    monkeypatch.setattr(env, "_append_frame", lambda: calls.append(env.game_number))
    env.reset(seed=0)
    for _ in range(10):
        env.step(0)
    assert calls == []  # game 1 is not recorded
    for game in (2, 3):
        env.reset()
        env.step(0)
    assert calls == [3, 3]  # game 3 is: its first frame at reset, then one per step
    env.close()


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_a_full_disk_warns_and_the_game_goes_on(tmp_path, capsys, monkeypatch):
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(tmp_path), video_every=1,
                   max_frames_per_game=800)
    recorder = recorder_of(env)
    env.reset(seed=0)
    assert recorder.recording

    def disk_full(frame):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recorder._writer, "append_data", disk_full)
    for _ in range(5):
        env.step(1)  # must not raise
    assert not recorder.recording
    assert "warning: could not write video of game 1" in capsys.readouterr().err
    monkeypatch.undo()
    play_games(env, 2)  # later games are recorded again
    env.close()
    names = os.listdir(tmp_path)
    assert not any("recording" in name for name in names)  # the broken file was removed
    assert any(name.startswith("breakout_game000002_score") for name in names)


def test_every_must_be_positive():
    with pytest.raises(ValueError):
        GameRecorder(gym.make("BreakoutNoFrameskip-v4"), "v", every=0, name_prefix="b")


def test_a_resumed_run_removes_the_recordings_of_games_it_plays_again(tmp_path):
    names = ["breakout_game000010_score3.mp4", "breakout_game000011_score-1.mp4",
             "breakout_game000012.recording.mp4", "breakout_evaluation_game000011_score5.mp4",
             "notes.txt"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    GameRecorder(gym.make("BreakoutNoFrameskip-v4"), str(tmp_path), every=5,
                 name_prefix="breakout", first_game=11).close()
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["breakout_game000010_score3.mp4", "breakout_evaluation_game000011_score5.mp4",
         "notes.txt"])


def test_a_label_keeps_evaluation_videos_apart(tmp_path):
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(tmp_path), video_every=1,
                   video_label="evaluation", max_frames_per_game=600)
    play_games(env, 1)
    env.close()
    assert [name[:35] for name in os.listdir(tmp_path)] == ["breakout_evaluation_game000001_scor"]


@pytest.mark.parametrize("folder", ["uncreatable", "unwritable"])
def test_a_video_folder_that_cannot_be_written_warns_and_play_goes_on(tmp_path, capsys, folder):
    if folder == "uncreatable":
        (tmp_path / "a-file").write_text("")
        video_dir = tmp_path / "a-file" / "videos"  # a folder inside a file cannot exist
    else:
        video_dir = tmp_path / "videos"
        video_dir.mkdir()
        video_dir.chmod(0o500)
        if os.access(video_dir, os.W_OK):  # root can write anyway: make it a file instead
            video_dir.chmod(0o700)
            video_dir.rmdir()
            video_dir.write_text("")
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(video_dir), video_every=1,
                   max_frames_per_game=400)
    play_games(env, 2)  # no AttributeError, no crash: the games are played
    env.close()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) >= 2  # one line per game that was to be recorded
    assert all(line.startswith("warning: could not write video of game") for line in warnings)
    assert not (video_dir.is_dir() and os.listdir(video_dir))
