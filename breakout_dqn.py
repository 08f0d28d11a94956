"""
Title: Deep Q-Learning for Atari Breakout
Description: Play Breakout from pixels with a Deep Q-Network, as in Mnih et al. (2015).
Accelerator: GPU recommended; a CPU run works, slowly.
"""

"""
## Introduction

This script trains a Deep Q-Network (DQN) to play Atari Breakout from the screen
alone, following "Human-level control through deep reinforcement learning"
(Mnih et al., Nature 2015).

The agent sees the last four 84x84 grayscale frames and outputs one number per
joystick action: its estimate Q(s, a) of the discounted sum of future rewards if
it takes action `a` now and plays well afterwards. It picks the action with the
highest value, except for a fraction epsilon of random actions that keep it
exploring. Every transition it sees goes into a replay memory; every four steps
it samples 32 old transitions and nudges Q(s, a) toward the Bellman target
`r + gamma * max_a' Q_target(s', a')`, where `Q_target` is a copy of the network
refreshed only now and then so that the target does not chase itself.

Run it with `python breakout_dqn.py`. It prints a line every few games, writes
`runs/breakout/progress.csv` and TensorBoard logs, saves checkpoints it can
resume from, records a video of every 100th game into `videos/breakout/` and
stops when the mean score of the last 100 games reaches 40, saving the
network as `runs/breakout/model.keras`. `python breakout_dqn.py --help` lists
every setting. Where this script departs from the paper, a comment says
`Note:`; the README lists all of them.
"""

"""
## Setup
"""

import collections
import math
import os
import sys
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import numpy as np
import tensorflow as tf

from common.atari import make_env
from common.checkpoint import (CheckpointError, Checkpointer, GracefulStop, load_agent, open_run,
                               save_model_atomically)
from common.config import (ConfigError, check_config, check_memory, check_writable, in_notebook,
                           parse_config)
from common.dqn import (BackgroundLearner, FusedAdam, make_greedy_policy, make_target_sync,
                        make_train_step)
from common.logger import RunLogger
from common.networks import build_q_network
from common.replay import ReplayMemory

"""
## Configuration

Every setting lives here, with its unit. The command line can override any of
them (`--total-steps 2000`, `--video-every 0`, ...). One *step* is one agent
decision, which the environment repeats for 4 emulator frames, so 1,000,000
steps are 4,000,000 frames, a little over 18 hours of play at 60 frames a second.

The defaults follow the Nature paper except where CleanRL's `dqn_atari.py`
learns faster; those lines say `Note:`. With them we expect Breakout to pass a
running reward of 40 within about 1 million steps (CleanRL's own curves pass 40
near 1.2 million with a slower exploration schedule).
"""


@dataclass
class Config:
    env_id: str = "BreakoutNoFrameskip-v4"
    """Gymnasium id of the game: a NoFrameskip-v4 id (no sticky actions; the frame
    skipping is done by our wrappers)."""
    total_steps: int = 10_000_000
    """agent steps to train for at most (one step is 4 emulator frames)."""
    solved_at: float = 40.0
    """stop once the mean raw score of the last 100 games reaches this."""
    seed: int = 1
    """seed of the environment, the exploration and the replay sampling."""
    buffer_size: int = 1_000_000
    """replay memory size in transitions, as in the paper (about 7.1 GB: one 84x84
    frame each)."""
    learning_starts: int = 50_000
    """agent steps of uniformly random play that fill the memory before learning starts
    (paper: 50,000)."""
    batch_size: int = 32
    """transitions per gradient update (paper: 32)."""
    train_every: int = 4
    """agent steps between two gradient updates (paper: 4)."""
    target_update_every: int = 1_000
    """agent steps between copies of the online network into the target network
    (paper: 10,000)."""
    learning_rate: float = 1e-4
    """Adam learning rate (paper: RMSProp at 0.00025)."""
    gamma: float = 0.99
    """discount factor per agent step (paper: 0.99)."""
    eps_start: float = 1.0
    """exploration rate epsilon until learning starts, where its decay begins
    (paper: 1.0)."""
    eps_end: float = 0.01
    """exploration rate after the decay (paper: 0.1)."""
    eps_decay_steps: int = 250_000
    """agent steps, counted from learning_starts, over which epsilon falls linearly to
    eps_end (paper: 1,000,000)."""
    max_gradient_norm: float = 10.0
    """gradients are rescaled to at most this global norm (the paper has no such
    clipping)."""
    overlap_updates: bool = True
    """run each update on a worker thread while the agent plays on (faster; the agent may
    act with weights one update old)."""
    video_every: int = 100
    """record every N-th game as an MP4 (0: never)."""
    video_dir: str = "videos/breakout"
    """folder for the MP4 recordings."""
    run_dir: str = "runs/breakout"
    """folder for progress.csv, TensorBoard logs, checkpoints and model.keras."""
    log_every_games: int = 10
    """print a console line every N finished games."""
    checkpoint_every: int = 50_000
    """agent steps between checkpoints (each about 27 MB without the replay memory)."""
    resume: bool = False
    """continue the run saved in --run-dir from its latest checkpoint."""
    save_replay: bool = False
    """also save the replay memory in each checkpoint (up to 7 GB), so a resume need not
    refill it."""
    evaluate: str = ""
    """instead of training, play a saved agent: a .keras file or a run folder."""
    episodes: int = 10
    """games to play with --evaluate (the paper played 30)."""
    eval_epsilon: float = 0.05
    """exploration rate while evaluating (paper: 0.05)."""

# Note: the Nature paper used RMSProp (learning rate 0.00025), a target update
# every 10,000 steps and an epsilon falling to 0.1 over 1,000,000 steps (its table
# says "frames", but DeepMind's code counts agent steps and starts the decay when
# learning starts). We use CleanRL's Adam at 1e-4 with a target update every
# 1,000 steps, which learns Breakout faster, and let epsilon fall to 0.01 over
# 250,000 steps, four times faster, so that the agent's own play dominates early.


"""
## Environment

`make_env` applies the DeepMind preprocessing (see `common/atari.py` for each
step): 1 to 30 random no-ops at the start of a game, every action repeated for
4 frames with the pixel-wise maximum of the last two frames as the observation
(Atari sprites flicker), a lost life ending the learning episode while the game
goes on, FIRE pressed to launch the ball, rewards clipped to -1, 0 or +1,
84x84 grayscale frames and a stack of the last 4 of them. The score we report is
the raw score of a whole game (all five lives, rewards not clipped); gymnasium's
`RecordEpisodeStatistics` puts it in `info["episode"]["r"]` when a game ends.
"""

"""
## Q-network

The network of the paper: three convolutions and a 512-unit layer, with one
linear output per action. The number of actions is read from the environment
(Breakout has 4: NOOP, FIRE, RIGHT, LEFT). The target network is a second copy
of the same architecture.
"""

"""
## Replay memory

Learning from consecutive frames would show the network a long run of almost
identical states; sampling uniformly from the last million transitions breaks
those correlations. `ReplayMemory` stores each 84x84 frame once (7 KB) with
its action, clipped reward and terminated flag, and rebuilds the 4-frame stacks
when it samples, so 1,000,000 transitions take about 7.1 GB instead of the 56 GB
of storing two stacks per transition.
"""

"""
## Training step

`make_train_step` returns a `tf.function` that does one update on a batch: the
target `y = r + gamma * max_a' Q_target(s', a') * (1 - terminated)`, the Huber
loss between `y` and `Q(s, a)` under a `GradientTape` (the paper's error
clipping), gradient clipping and the optimizer step: Keras' Adam, which
`FusedAdam` applies with one fused TensorFlow kernel (the same arithmetic, a
little faster on a CPU). Only a real end of the
learning episode (`terminated`) cuts the bootstrap; a game stopped by the time
limit (`truncated`) still looks ahead.

Acting calls the network through a `tf.function` too: about 1 ms a step on a
CPU, where `model.predict` would cost about 100.

`BackgroundLearner` runs each update on a worker thread while the agent plays
the next four steps, since on a CPU an update takes longer than those four
steps. The updates are the same, in the same order. Note: the agent may then act
with weights one update old, where the paper acts with the newest. The learner
lets the running update finish before the target network is synced or a
checkpoint is taken.
`--no-overlap-updates` runs every update in turn, as the paper does.
"""


def epsilon_at(step: int, config: Config) -> float:
    """The exploration rate after `step` agent steps.

    It stays at `eps_start` while the memory fills, falls linearly to `eps_end`
    over the next `eps_decay_steps` steps, then stays there.
    """
    if config.eps_decay_steps == 0:
        return config.eps_end if step >= config.learning_starts else config.eps_start
    fraction = min(max(step - config.learning_starts, 0) / config.eps_decay_steps, 1.0)
    return config.eps_start + fraction * (config.eps_end - config.eps_start)


"""
## Training loop

The loop below is the whole algorithm: choose an action epsilon-greedily, play
it, store the transition, learn every `train_every` steps once the memory holds
`learning_starts` transitions, copy the online network into the target every
`target_update_every` steps. Games are counted when the real game ends (all
lives lost), and the *running reward* is the mean raw score of the last 100 of
them. Training stops when it reaches `solved_at` over a full window of 100
games, or after `total_steps`.

`make_env` and `build_q_network` are arguments so that the tests can run this
very loop on a small game of their own.
"""


def train(config: Config, make_env=make_env, build_q_network=build_q_network) -> dict:
    """Trains a DQN agent as configured; returns a summary of the run."""
    # Refuse what cannot work before allocating gigabytes: a resume without a
    # checkpoint, a new run over an old one, a memory larger than the free RAM.
    checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
    loop_state = open_run(checkpoint_dir, config.resume, config.env_id)
    check_memory(ReplayMemory.bytes_needed(config.buffer_size),
                 ReplayMemory.bytes_needed(1))

    games_played = loop_state["games"] if loop_state else 0
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=config.video_every,
                   first_game=games_played + 1)
    num_actions = int(env.action_space.n)  # Breakout: 4 (NOOP, FIRE, RIGHT, LEFT)
    observation_shape = env.observation_space.shape

    q_network = build_q_network(observation_shape, num_actions)
    target_network = build_q_network(observation_shape, num_actions, name="target_network")
    optimizer = FusedAdam(learning_rate=config.learning_rate)  # Keras' Adam, one fused kernel
    greedy_actions = make_greedy_policy(q_network)
    train_step = make_train_step(q_network, target_network, optimizer, config.gamma,
                                 config.max_gradient_norm)
    sync_target = make_target_sync(q_network, target_network)
    learner = BackgroundLearner(train_step, sync_target, overlap=config.overlap_updates)
    memory = ReplayMemory(config.buffer_size, frame_shape=observation_shape[:-1],
                          history_length=observation_shape[-1], seed=config.seed)
    checkpointer = Checkpointer(checkpoint_dir, q_network, target_network, optimizer)
    rng = np.random.default_rng(config.seed)  # exploration
    recent_scores = collections.deque(maxlen=100)  # raw scores of the last 100 games
    step = 0
    learn_from_step = config.learning_starts  # the memory holds enough transitions from here

    if loop_state is None:
        learner.sync_target()
    else:
        loop_state, replay_state = checkpointer.restore()
        step = loop_state["step"]
        rng.bit_generator.state = loop_state["exploration_rng"]
        recent_scores.extend(loop_state["recent_scores"])
        if replay_state is not None:
            saved_size = len(replay_state["frames"])
            if saved_size != config.buffer_size:
                raise ConfigError(f"--resume: the saved replay memory holds {saved_size} "
                                  f"transitions; pass --buffer-size {saved_size} as the run did")
            memory.load_state_dict(replay_state)
            memory.end_episode()  # the game in progress was not saved: a new one starts
        learn_from_step = step if replay_state is not None else step + config.learning_starts
        print(f"Resumed {config.run_dir} at step {step:,} after {games_played:,} games; "
              f"replay memory {'restored' if replay_state else 'refills'} "
              f"({len(memory):,} transitions).", flush=True)

    def save_checkpoint() -> str:
        learner.wait()  # a checkpoint holds whole updates only
        state = {"env_id": config.env_id, "step": step, "games": games_played,
                 "recent_scores": list(recent_scores),
                 "exploration_rng": rng.bit_generator.state}
        return checkpointer.save(step, state, memory.state_dict() if config.save_replay else None)

    logger = RunLogger(config.run_dir, config.log_every_games,
                       resume_step=step if loop_state else None)
    observation, _ = env.reset(seed=config.seed + games_played)
    stop_reason = "total steps reached"
    with GracefulStop() as stop:
        try:
            while step < config.total_steps:
                # Act: random while the memory fills (a fresh run only), then epsilon-greedy.
                epsilon = epsilon_at(step, config)
                if step < config.learning_starts or rng.random() < epsilon:
                    action = int(rng.integers(num_actions))
                else:
                    actions, _ = greedy_actions(observation[np.newaxis])
                    action = int(actions.numpy()[0])
                next_observation, reward, terminated, truncated, info = env.step(action)
                memory.add(observation, action, reward, next_observation, terminated, truncated)
                observation = next_observation
                if terminated or truncated:  # a life lost, or the game over: next episode
                    observation, _ = env.reset()
                step += 1

                # Learn from a random batch of past transitions.
                if step % config.train_every == 0 and step >= learn_from_step:
                    learner.update(memory.sample(config.batch_size))
                if step % config.target_update_every == 0:
                    learner.sync_target()

                # A whole game (all lives) ended: record its raw score.
                if "episode" in info:
                    games_played += 1
                    recent_scores.append(float(info["episode"]["r"]))
                    running_reward = float(np.mean(recent_scores))
                    loss, mean_q = learner.pop_statistics()  # means over the game's updates
                    logger.log_game(step, games_played, recent_scores[-1], running_reward,
                                    epsilon, loss, mean_q)
                    if (len(recent_scores) == recent_scores.maxlen
                            and running_reward >= config.solved_at):
                        stop_reason = f"solved: running reward {running_reward:.2f}"
                        break

                if step % config.checkpoint_every == 0:
                    save_checkpoint()
                if stop.requested:  # Ctrl-C or SIGTERM: save, then stop
                    break
        finally:
            learner.close()
            logger.close()
            env.close()

    checkpoint_path = save_checkpoint()
    if stop.requested:
        print(f"Stopped by {stop.signal_name} at step {step:,}; checkpoint saved to "
              f"{checkpoint_path}.\nResume with: {resume_command()}", flush=True)
        return {"step": step, "games": games_played, "stopped": True}
    model_path = os.path.join(config.run_dir, "model.keras")
    save_model_atomically(q_network, model_path)
    running_reward = float(np.mean(recent_scores)) if recent_scores else math.nan
    print(f"Finished ({stop_reason}) after {step:,} steps and {games_played:,} games; "
          f"running reward {running_reward:.2f}. Model saved to {model_path}.", flush=True)
    return {"step": step, "games": games_played, "running_reward": running_reward,
            "model_path": model_path, "stopped": False}


def resume_command() -> str:
    """The command line that continues this run (in a notebook: what to change)."""
    if in_notebook():
        return "set resume=True in Config (keep the other settings) and run again"
    arguments = [argument for argument in sys.argv[1:] if argument != "--resume"]
    return " ".join(["python", os.path.basename(sys.argv[0]) or "breakout_dqn.py", *arguments,
                     "--resume"])


"""
## Evaluation and video

The paper scores an agent over 30 games with epsilon 0.05, random no-op starts
and at most 5 minutes of play (18,000 frames) per game. `evaluate` plays
`--episodes` such games with a saved network, records each as an MP4 and prints
the mean and standard deviation of the raw scores.
"""


def evaluate(config: Config, make_env=make_env, build_q_network=build_q_network) -> list[float]:
    """Plays `config.episodes` games with a saved agent; returns their raw scores."""
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=1,
                   video_label="evaluation",  # keeps these apart from the training videos
                   max_frames_per_game=5 * 60 * 60)  # 5 minutes at 60 frames a second
    q_network = load_agent(config.evaluate, config.env_id, env.observation_space.shape,
                           int(env.action_space.n), build_q_network)
    greedy_actions = make_greedy_policy(q_network)
    rng = np.random.default_rng(config.seed)
    scores = []
    observation, _ = env.reset(seed=config.seed)
    while len(scores) < config.episodes:
        if rng.random() < config.eval_epsilon:
            action = int(rng.integers(env.action_space.n))
        else:
            actions, _ = greedy_actions(observation[np.newaxis])
            action = int(actions.numpy()[0])
        observation, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            observation, _ = env.reset()
        if "episode" in info:
            scores.append(float(info["episode"]["r"]))
            print(f"game {len(scores)}: score {scores[-1]:g}", flush=True)
    env.close()
    print(f"Mean score over {len(scores)} games: {np.mean(scores):.2f} "
          f"(standard deviation {np.std(scores):.2f}). Videos in {config.video_dir}.", flush=True)
    return scores


def main(argv=None) -> int:
    """Runs training or evaluation as the command line says; returns the exit status."""
    config = parse_config(Config, argv, description="Deep Q-Learning for Atari Breakout.")
    program = os.path.basename(sys.argv[0])
    checkpoint_dir = os.path.join(config.run_dir, "checkpoints")
    try:
        check_config(config)
        if config.video_every > 0 or config.evaluate:
            check_writable(config.video_dir, "--video-dir")
        if config.evaluate:
            evaluate(config)
        else:
            check_writable(config.run_dir, "--run-dir")
            train(config)
    except (ConfigError, CheckpointError) as error:
        print(f"{program}: error: {error}", file=sys.stderr)
        return 2
    except FloatingPointError as error:
        last_good = tf.train.latest_checkpoint(checkpoint_dir)
        print(f"{program}: training diverged: {error}; the last good "
              f"checkpoint is {last_good or 'none'}; try a lower --learning-rate and resume",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C pressed twice, or once while evaluating
        if config.evaluate:
            print("\nStopped.", file=sys.stderr)
            return 130
        last_good = tf.train.latest_checkpoint(checkpoint_dir)
        print(f"\nStopped at once; the last complete checkpoint is {last_good or 'none'}.",
              file=sys.stderr)
        if last_good:
            print(f"Resume with: {resume_command()}", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{program}: error: out of memory; pass a smaller "
              f"--buffer-size", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    exit_status = main()
    if not in_notebook():  # in a notebook, SystemExit would only show a traceback
        sys.exit(exit_status)
