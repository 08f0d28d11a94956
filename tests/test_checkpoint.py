"""Tests of common/checkpoint.py: round trips, atomicity, safe model loading."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from common.checkpoint import (CheckpointError, Checkpointer, load_agent, load_q_network,
                               read_loop_state, recorded_game, save_model_atomically)
from common.dqn import make_train_step


def tiny_network(name="q_network"):
    inputs = keras.Input((3,), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    return keras.Model(inputs, keras.layers.Dense(2)(x), name=name)


def trained_parts(seed=0):
    keras.utils.set_random_seed(seed)
    q_network, target_network = tiny_network(), tiny_network("target_network")
    optimizer = keras.optimizers.Adam(1e-2)
    train_step = make_train_step(q_network, target_network, optimizer, 0.9)
    observations = np.array([[1, 2, 3], [200, 100, 0]], np.uint8)
    for _ in range(3):
        train_step(observations, np.array([0, 1], np.int32), np.array([1.0, -1.0], np.float32),
                   observations, np.array([0.0, 1.0], np.float32))
    return q_network, target_network, optimizer


def fresh_parts():
    """Untrained networks and optimizer: quick to make, enough to save or restore into."""
    return tiny_network(), tiny_network("target_network"), keras.optimizers.Adam(1e-2)


def test_round_trip_restores_networks_optimizer_and_loop_state(tmp_path):
    q_network, target_network, optimizer = trained_parts()
    saver = Checkpointer(str(tmp_path), q_network, target_network, optimizer)
    replay = {"frames": np.arange(12, dtype=np.uint8).reshape(3, 4), "cursor": np.array(2)}
    saver.save(700, {"step": 700, "games": 5, "recent_scores": [1.0, 2.0]}, replay)

    q2, t2, optimizer2 = tiny_network(), tiny_network("target_network"), keras.optimizers.Adam(1e-2)
    loop_state, replay_state = Checkpointer(str(tmp_path), q2, t2, optimizer2).restore()
    assert loop_state == {"step": 700, "games": 5, "recent_scores": [1.0, 2.0]}
    assert read_loop_state(str(tmp_path)) == loop_state
    assert set(replay_state) == {"frames", "cursor"}
    np.testing.assert_array_equal(replay_state["frames"], replay["frames"])
    for restored, original in [(q2, q_network), (t2, target_network)]:
        for a, b in zip(restored.get_weights(), original.get_weights()):
            np.testing.assert_array_equal(a, b)
    assert int(optimizer2.iterations) == 3
    for a, b in zip(optimizer2.variables, optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_keeps_the_last_three_and_their_replays_only(tmp_path):
    saver = Checkpointer(str(tmp_path / "checkpoints"), *fresh_parts())  # made on first save
    tmp_path = tmp_path / "checkpoints"
    for step in (100, 200, 300, 400):
        saver.save(step, {"step": step}, {"frames": np.zeros(2, np.uint8)})
    assert saver.latest.endswith("ckpt-400")
    replays = sorted(name for name in os.listdir(tmp_path) if name.startswith("replay"))
    assert replays == ["replay-200.npz", "replay-300.npz", "replay-400.npz"]
    saver.save(500, {"step": 500})  # saved without the memory
    assert read_loop_state(str(tmp_path)) == {"step": 500}
    assert Checkpointer(str(tmp_path), *fresh_parts()).restore()[1] is None


def test_a_partly_written_checkpoint_is_never_the_latest(tmp_path):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    saver.save(100, {"step": 100})
    # What a kill -9 in the middle of the next save leaves: data files, no index update.
    (tmp_path / "ckpt-200.data-00000-of-00001").write_bytes(b"\x00" * 10)
    (tmp_path / "replay-200.npz.tmp.npz").write_bytes(b"PK")
    assert read_loop_state(str(tmp_path)) == {"step": 100}
    assert Checkpointer(str(tmp_path), *fresh_parts()).restore()[0] == {"step": 100}


def test_missing_and_damaged_checkpoints_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint in"):
        Checkpointer(str(tmp_path), *fresh_parts()).restore()
    assert read_loop_state(str(tmp_path / "nowhere")) is None
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    saver.save(100, {"step": 100})
    data = next(tmp_path.glob("ckpt-100.data*"))
    data.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="can be read: ckpt-100"):
        Checkpointer(str(tmp_path), *fresh_parts()).restore()


def test_models_load_in_safe_mode_and_bad_files_are_refused(tmp_path):
    q_network, _, _ = trained_parts()
    path = str(tmp_path / "model.keras")
    save_model_atomically(q_network, path)
    assert os.listdir(tmp_path) == ["model.keras"]
    loaded = load_q_network(path)
    observations = np.array([[9, 8, 7]], np.uint8)
    np.testing.assert_allclose(loaded(observations), q_network(observations))
    with pytest.raises(CheckpointError, match="no model file"):
        load_q_network(str(tmp_path / "missing.keras"))
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"this is not a zip file")
    with pytest.raises(CheckpointError, match="is not a .keras file"):
        load_q_network(str(corrupt))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes((tmp_path / "model.keras").read_bytes()[:-200])
    with pytest.raises(CheckpointError, match="cannot load model|is not a .keras file"):
        load_q_network(str(truncated))


def test_a_lambda_layer_is_refused_by_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    path = str(tmp_path / "lambda.keras")
    model.save(path)
    with pytest.raises(CheckpointError, match="cannot load model"):
        load_q_network(path)


def test_non_finite_weights_are_never_saved(tmp_path):
    q_network, target_network, optimizer = trained_parts()
    saver = Checkpointer(str(tmp_path), q_network, target_network, optimizer)
    saver.save(100, {"step": 100})
    weights = q_network.get_weights()
    weights[0][0, 0] = np.nan
    q_network.set_weights(weights)
    with pytest.raises(FloatingPointError, match="no longer finite at step 200, so no checkpoint was saved"):
        saver.save(200, {"step": 200})
    assert read_loop_state(str(tmp_path)) == {"step": 100}


def test_a_second_save_at_the_same_step_does_not_rewrite_the_latest(tmp_path):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    first = saver.save(100, {"step": 100, "games": 1})
    data = next(tmp_path.glob("ckpt-100.data*"))
    written = data.stat().st_mtime_ns
    assert saver.save(100, {"step": 100, "games": 1}) == first
    assert data.stat().st_mtime_ns == written
    assert len(list(tmp_path.glob("ckpt-*.index"))) == 1


def disk_full(*arguments, **keywords):
    """Stands in for a write that the disk refuses."""
    raise OSError(28, "No space left on device")


def test_a_full_disk_while_saving_keeps_the_last_complete_checkpoint(tmp_path, monkeypatch):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    saver.save(100, {"step": 100})

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(CheckpointError, match=r"could not write the checkpoint of step 200 .*"
                                              r"No space left on device.*ckpt-100; free some"):
        saver.save(200, {"step": 200}, {"frames": np.zeros(2, np.uint8)})
    assert read_loop_state(str(tmp_path)) == {"step": 100}


def test_a_full_disk_at_the_first_checkpoint_does_not_advise_a_resume(tmp_path, monkeypatch):
    saver = Checkpointer(str(tmp_path), *fresh_parts())

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(CheckpointError, match="no complete checkpoint to resume") as raised:
        saver.save(100, {"step": 100}, {"frames": np.zeros(2, np.uint8)})
    assert "--resume" not in str(raised.value)
    assert "another --run-dir" in str(raised.value)
    assert read_loop_state(str(tmp_path)) is None


def test_a_full_disk_while_saving_the_model(tmp_path, monkeypatch):
    q_network, _, _ = trained_parts()

    def disk_full(path, *arguments, **keywords):
        with open(path, "wb") as file:
            file.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(q_network, "save", disk_full)
    with pytest.raises(CheckpointError, match="could not save the model"):
        save_model_atomically(q_network, str(tmp_path / "model.keras"))
    assert os.listdir(tmp_path) == []  # neither a half file nor its temporary remains


def build_tiny(observation_shape, num_actions, name="q_network", dueling=False):
    return tiny_network(name)


def test_load_agent_from_a_run_folder_with_checkpoints_only(tmp_path, capsys):
    q_network, target_network, optimizer = trained_parts()
    Checkpointer(str(tmp_path / "checkpoints"), q_network, target_network, optimizer).save(
        300, {"env_id": "BreakoutNoFrameskip-v4", "step": 300})
    agent = load_agent(str(tmp_path), "BreakoutNoFrameskip-v4", (3,), 2, build_tiny)
    for a, b in zip(agent.get_weights(), q_network.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert "network of checkpoint" in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="holds a run of BreakoutNoFrameskip-v4, not Pong"):
        load_agent(str(tmp_path), "PongNoFrameskip-v4", (3,), 2, build_tiny)
    q_network.set_weights([weights + 1.0 for weights in q_network.get_weights()])
    save_model_atomically(q_network, str(tmp_path / "model.keras"))  # preferred once it exists
    agent = load_agent(str(tmp_path), "BreakoutNoFrameskip-v4", (3,), 2, build_tiny)
    for a, b in zip(agent.get_weights(), q_network.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointError, match="has 2 outputs but PongNoFrameskip-v4 has 6"):
        load_agent(str(tmp_path / "model.keras"), "PongNoFrameskip-v4", (3,), 6, build_tiny)
    with pytest.raises(CheckpointError, match="neither model.keras nor checkpoints"):
        load_agent(str(tmp_path / "checkpoints"), "BreakoutNoFrameskip-v4", (3,), 2, build_tiny)


def test_a_checkpoint_saved_before_the_first_update_restores(tmp_path):
    """Stopping while the memory fills saves an optimizer without Adam's slots yet."""
    q_network, target_network = tiny_network(), tiny_network("target_network")
    optimizer = keras.optimizers.Adam(1e-2)  # never applied a gradient
    Checkpointer(str(tmp_path), q_network, target_network, optimizer).save(
        50, {"step": 50, "games": 0})
    parts = tiny_network(), tiny_network("target_network"), keras.optimizers.Adam(1e-2)
    loop_state, _ = Checkpointer(str(tmp_path), *parts).restore()
    assert loop_state == {"step": 50, "games": 0}
    assert int(parts[2].iterations) == 0


def saved_three(tmp_path):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    for step in (100, 200, 300):
        saver.save(step, {"step": step})
    return saver


@pytest.mark.parametrize("damage", ["truncated data", "empty index", "zero-byte data"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_newest_good_one(tmp_path, capsys, damage):
    saved_three(tmp_path)
    data = next(tmp_path.glob("ckpt-300.data*"))
    if damage == "truncated data":
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    elif damage == "zero-byte data":
        data.write_bytes(b"")
    else:
        (tmp_path / "ckpt-300.index").write_bytes(b"")
    assert read_loop_state(str(tmp_path))["step"] in (200, 300)  # the loop record may survive
    loop_state, _ = Checkpointer(str(tmp_path), *fresh_parts()).restore()
    assert loop_state == {"step": 200}
    warning = capsys.readouterr().err
    assert "skipped damaged checkpoint ckpt-300" in warning and warning.count("\n") == 1


@pytest.mark.parametrize("index", [b"", b"\x00\x01\xff binary \x00" * 10, b"not: a checkpoint"])
def test_a_damaged_index_file_falls_back_to_the_checkpoint_files(tmp_path, index):
    saved_three(tmp_path)
    (tmp_path / "checkpoint").write_bytes(index)
    assert read_loop_state(str(tmp_path)) == {"step": 300}
    loop_state, _ = Checkpointer(str(tmp_path), *fresh_parts()).restore()
    assert loop_state == {"step": 300}


def test_after_a_fallback_the_damaged_step_is_written_again(tmp_path):
    saved_three(tmp_path)
    (tmp_path / "ckpt-300.index").write_bytes(b"\x00" * 64)
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    assert saver.restore()[0] == {"step": 200}
    saver.save(300, {"step": 300, "again": True})
    assert read_loop_state(str(tmp_path)) == {"step": 300, "again": True}
    assert Checkpointer(str(tmp_path), *fresh_parts()).restore()[0]["again"]


def test_no_readable_checkpoint_is_one_line_that_destroys_nothing(tmp_path):
    saved_three(tmp_path)
    for index in tmp_path.glob("ckpt-*.index"):
        index.write_bytes(b"")
    with pytest.raises(CheckpointError) as raised:
        read_loop_state(str(tmp_path))
    message = str(raised.value)
    assert "can be read" in message and "\n" not in message and "without --resume" not in message
    with pytest.raises(CheckpointError, match="can be read"):
        Checkpointer(str(tmp_path), *fresh_parts()).restore()


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_a_damaged_or_missing_replay_is_one_warning_and_none(tmp_path, capsys, damage):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    saver.save(100, {"step": 100, "replay_saved": True}, {"frames": np.ones(5000, np.uint8)})
    replay = tmp_path / "replay-100.npz"
    if damage == "missing":
        replay.unlink()
    else:
        replay.write_bytes(replay.read_bytes()[:300])
    loop_state, replay_archive = Checkpointer(str(tmp_path), *fresh_parts()).restore()
    assert loop_state["step"] == 100 and replay_archive is None
    warning = capsys.readouterr().err
    assert "it refills" in warning and warning.count("\n") == 1


def test_a_failed_replay_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    saver = Checkpointer(str(tmp_path), *fresh_parts())

    def half_written(path, **arrays):
        with open(path, "wb") as file:
            file.write(b"PK half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", half_written)
    with pytest.raises(CheckpointError, match="No space left"):
        saver.save(100, {"step": 100}, {"frames": np.zeros(2, np.uint8)})
    assert not list(tmp_path.glob("*.tmp*"))


def test_not_enough_disk_for_the_replay_is_refused_before_writing(tmp_path, monkeypatch):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    monkeypatch.setattr("common.checkpoint.shutil.disk_usage",
                        lambda path: type("Usage", (), {"free": 1000})())
    with pytest.raises(CheckpointError, match="the replay memory needs .* GB but only"):
        saver.save(100, {"step": 100}, {"frames": np.zeros(5000, np.uint8)})
    assert not list(tmp_path.glob("replay-*"))


def test_saved_files_are_flushed_to_disk_before_the_index_names_them(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda descriptor: (synced.append(
        os.readlink(f"/proc/self/fd/{descriptor}")), real_fsync(descriptor)))
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    saver.save(100, {"step": 100}, {"frames": np.zeros(2, np.uint8)})
    names = [os.path.basename(path) for path in synced]
    partial = f".partial-{os.getpid()}-"  # common.files.write_atomically's temporary names
    assert names.index(f"{partial}replay-100.npz") < names.index("ckpt-100.index")
    assert any(name.startswith("ckpt-100.data") for name in names)
    assert names.index("ckpt-100.index") < names.index(f"{partial}checkpoint")
    save_model_atomically(fresh_parts()[0], str(tmp_path / "model.keras"))
    assert f"{partial}model.keras" in [os.path.basename(path) for path in synced]


def test_a_run_folder_plays_its_newest_checkpoint_when_newer_than_its_model(tmp_path, capsys):
    q_network, target_network, optimizer = trained_parts()
    save_model_atomically(q_network, str(tmp_path / "model.keras"))
    os.utime(tmp_path / "model.keras", (1_000_000, 1_000_000))  # a model from long ago
    Checkpointer(str(tmp_path / "checkpoints"), q_network, target_network, optimizer).save(
        300, {"env_id": "BreakoutNoFrameskip-v4", "step": 300})
    build = lambda shape, actions, dueling=False: tiny_network()  # noqa: E731
    load_agent(str(tmp_path), "BreakoutNoFrameskip-v4", (3,), 2, build)
    assert "Playing with the network of checkpoint" in capsys.readouterr().out
    os.utime(tmp_path / "model.keras")  # now the model is the newest: it is played
    load_agent(str(tmp_path), "BreakoutNoFrameskip-v4", (3,), 2, build)
    assert "Playing with the network of checkpoint" not in capsys.readouterr().out


def test_a_model_records_its_game_and_is_refused_on_another(tmp_path, capsys):
    q_network = trained_parts()[0]
    recorded = str(tmp_path / "recorded.keras")
    save_model_atomically(q_network, recorded, "PongNoFrameskip-v4")
    assert recorded_game(recorded) == "PongNoFrameskip-v4"
    load_agent(recorded, "PongNoFrameskip-v4", (3,), 2, build_tiny)  # its own game: plays
    # Space Invaders has Pong's 6 actions; the record, not the shape, tells them apart.
    with pytest.raises(CheckpointError, match="was trained on PongNoFrameskip-v4, not Space"):
        load_agent(recorded, "SpaceInvadersNoFrameskip-v4", (3,), 2, build_tiny)
    bare = str(tmp_path / "bare.keras")
    save_model_atomically(q_network, bare)  # as older versions saved it: no record
    assert recorded_game(bare) is None
    load_agent(bare, "SpaceInvadersNoFrameskip-v4", (3,), 2, build_tiny)
    assert ("does not record the game it was trained on; playing it on "
            "SpaceInvadersNoFrameskip-v4") in capsys.readouterr().err


def test_a_run_folder_refuses_another_game_whichever_file_would_play(tmp_path):
    q_network, target_network, optimizer = trained_parts()
    Checkpointer(str(tmp_path / "checkpoints"), q_network, target_network, optimizer).save(
        300, {"env_id": "PongNoFrameskip-v4", "step": 300})
    save_model_atomically(q_network, str(tmp_path / "model.keras"))  # newer, no record
    with pytest.raises(CheckpointError, match="holds a run of PongNoFrameskip-v4, not Space"):
        load_agent(str(tmp_path), "SpaceInvadersNoFrameskip-v4", (3,), 2, build_tiny)


def test_a_failed_save_leaves_no_temporary_folder_nor_its_replay(tmp_path, monkeypatch):
    saver = Checkpointer(str(tmp_path), *fresh_parts())
    real_write = tf.train.Checkpoint.write

    def half_written(self, prefix, *args, **kwargs):
        os.makedirs(prefix + "_temp", exist_ok=True)  # where TensorFlow writes, then renames
        (tmp_path / "ckpt-100_temp" / "part").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tf.train.Checkpoint, "write", half_written)
    with pytest.raises(CheckpointError, match="No space left"):
        saver.save(100, {"step": 100}, {"frames": np.zeros(2, np.uint8)})
    monkeypatch.setattr(tf.train.Checkpoint, "write", real_write)
    assert os.listdir(tmp_path) == []
