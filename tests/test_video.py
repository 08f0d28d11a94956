"""Tests of common/video.py on the real emulator: decodable MP4s, naming, full disks."""

import errno
import os
import re

import gymnasium as gym
import imageio.v2 as imageio
import numpy as np
import pytest

from common.atari import make_env
from common.video import GameRecorder, is_whole_mp4


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
def test_a_video_folder_that_cannot_be_written_warns_and_play_goes_on(tmp_path, capsys, folder,
                                                                     monkeypatch):
    if folder == "uncreatable":
        (tmp_path / "a-file").write_text("")
        video_dir = tmp_path / "a-file" / "videos"  # a folder inside a file cannot exist
    else:
        video_dir = tmp_path / "videos"
        video_dir.mkdir()
        video_dir.chmod(0o500)

        def refused(path, **kwargs):  # what ffmpeg meets there, even as root (CI runs as root)
            raise PermissionError(13, "Permission denied")

        if os.access(video_dir, os.W_OK):  # root may write anyway: the refusal is stood in
            monkeypatch.setattr("common.video.imageio.get_writer", refused)
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(video_dir), video_every=1,
                   max_frames_per_game=400)
    play_games(env, 2)  # no AttributeError, no crash: the games are played
    env.close()
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) >= 2  # one line per game that was to be recorded
    assert all(line.startswith("warning: could not write video of game") for line in warnings)
    assert not (video_dir.is_dir() and os.listdir(video_dir))
    if folder == "unwritable":
        assert "Permission denied" in warnings[0]


@pytest.mark.slow  # over a second: pytest -m "not slow" stays under a minute
def test_a_recording_ffmpeg_could_not_finish_is_removed_with_one_warning(tmp_path, capfd,
                                                                        monkeypatch):
    real_get_writer = imageio.get_writer
    opened = []

    def writer_on_a_full_disk(path, **kwargs):  # the first game's ffmpeg quietly fails
        writer = real_get_writer(path, **kwargs)
        opened.append(path)
        if len(opened) == 1:
            real_close = writer.close

            def close():
                real_close()
                assert is_whole_mp4(path)  # what ffmpeg writes when it can
                with open(path, "r+b") as file:
                    file.truncate(8_000)  # cut before its index, as on a full disk

            writer.close = close
        return writer

    monkeypatch.setattr("common.video.imageio.get_writer", writer_on_a_full_disk)
    env = make_env("BreakoutNoFrameskip-v4", video_dir=str(tmp_path), video_every=1,
                   max_frames_per_game=2_000)
    play_games(env, 2)
    env.close()
    err = capfd.readouterr().err
    assert err.count("warning: could not write video of game 1") == 1
    assert "ffmpeg could not finish the file" in err
    assert "moov" not in err and "ffmpeg version" not in err  # ffmpeg's own lines stay quiet
    names = sorted(os.listdir(tmp_path))
    assert len(names) == 1 and names[0].startswith("breakout_game000002_score")
    assert is_whole_mp4(str(tmp_path / names[0]))


def test_is_whole_mp4_needs_every_box_and_the_index(tmp_path):
    def box(kind, payload=b""):
        return (8 + len(payload)).to_bytes(4, "big") + kind + payload

    whole = box(b"ftyp", b"isom") + box(b"mdat", b"\x00" * 100) + box(b"moov", b"x" * 20)
    cases = {"whole": whole, "no-index": whole[:-28], "cut": whole[:-5], "empty": b""}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    assert [is_whole_mp4(str(tmp_path / name)) for name in cases] == [True, False, False, False]
    assert not is_whole_mp4(str(tmp_path / "missing"))
