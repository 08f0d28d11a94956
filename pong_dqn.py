"""
Title: Deep Q-Learning for Atari Pong
Description: Play Pong from pixels with a Deep Q-Network, as in Mnih et al. (2015).
Accelerator: GPU recommended; a CPU run works, slowly.
"""

"""
## Introduction

This script trains a Deep Q-Network (DQN) to play Atari Pong from the screen
alone, following "Human-level control through deep reinforcement learning"
(Mnih et al., Nature 2015).

The agent sees the last four 84x84 grayscale frames and outputs one number per
joystick action: its estimate Q(s, a) of the discounted sum of future rewards if
it takes action `a` now and plays well afterwards. It picks the action with the
highest value, except for a fraction epsilon of random actions that keep it
exploring. Every transition it sees goes into a replay memory; every eight steps
it samples 32 old transitions and nudges Q(s, a) toward the Bellman target, here
over three steps: `r_t + gamma r_t+1 + gamma^2 r_t+2 + gamma^3 max_a' Q_target(s_t+3, a')`,
where `Q_target` is a copy of the network refreshed only now and then so that the
target does not chase itself.

Run it with `python pong_dqn.py`. It prints a line every few games, writes
`runs/pong/progress.csv` and TensorBoard logs, saves checkpoints it can
resume from, records a video of every 100th game into `videos/pong/` and
stops when the mean score of the last 100 games reaches 18 (a game is won
21 to at most 3), saving the network as `runs/pong/model.keras`. A Pong score
runs from -21 (every point lost) to +21. `python pong_dqn.py --help` lists
every setting. Where this script or `common/` departs from the paper, a comment
says `Deviation (...)`; `docs/implementation-details.md` lists exactly those.
"""

"""
## Setup
"""

import os
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter quiet

import numpy as np

from common.atari import make_env
from common.checkpoint import load_agent
from common.cli import GracefulStop, Interrupted, command_line, exit_with
from common.dqn import (BackgroundLearner, FusedAdam, choose_action, make_greedy_policy,
                        make_target_sync, make_train_step, seed_everything)
from common.logger import plural
from common.networks import build_q_network
from common.replay import ReplayMemory
from common.run import Run, first_learning_step, settings_for_evaluation

"""
## Configuration

Every setting lives here, with its unit. The command line can override any of
them (`--total-steps 2000`, `--video-every 0`, ...). One *step* is one agent
decision, which the environment repeats for 4 emulator frames, so 1,000,000
steps are 4,000,000 frames, a little over 18 hours of play at 60 frames a second.

The defaults follow the Nature paper except where another choice learns or runs
faster, or needs less memory; those lines say `Deviation`. Most are Breakout's too
(Adam, a target copied more often, exploration over 250,000 steps). Pong's own come
from published Pong settings: a memory of 100,000 transitions (Lapan's and
Tianshou's) that starts learning after 10,000 steps (Lapan's) and 3-step targets
(Tianshou's), with one update every 8 steps for speed on a CPU, where the updates set
the pace. A screening on Pong chose the exploration and learning rate to go with
them (`docs/results.md`, "Pong"). The aim is a running reward of 18 within a million
steps, where CleanRL's one-step DQN needs 2.4 to 3.2 million.
"""


@dataclass
class Config:
    env_id: str = "PongNoFrameskip-v4"
    """Gymnasium id of the game: a NoFrameskip-v4 id (no sticky actions; the frame
    skipping is done by our wrappers)."""
    # Deviation (training-length): the paper trained for 50 million frames and then
    # evaluated; a run here stops once solved_at is reached, or after total_steps.
    total_steps: int = 10_000_000
    """agent steps to train for at most (one step is 4 emulator frames)."""
    solved_at: float = 18.0
    """stop once the mean raw score of the last 100 games reaches this."""
    seed: int = 1
    """seed of everything random: the initial weights, the games, the exploration and the
    replay sampling. A run starts alike each time; later the update thread's timing may
    make it drift (--deterministic repeats it exactly)."""
    # Deviation (replay-size): the paper keeps 1,000,000 transitions; Lapan's and
    # Tianshou's Pong settings keep 100,000, which fill sooner, hold fresher play and
    # take a tenth of the memory.
    buffer_size: int = 100_000
    """replay memory size in transitions (paper: 1,000,000; 100,000 take about 0.71 GB:
    one 84x84 frame each)."""
    # Deviation (replay-start): the paper plays 50,000 random steps first (a twentieth
    # of its memory); Lapan's Pong settings start after 10,000, a tenth of theirs.
    learning_starts: int = 10_000
    """agent steps of uniformly random play that fill the memory before learning starts
    (paper: 50,000)."""
    batch_size: int = 32
    """transitions per gradient update (paper: 32)."""
    # Deviation (update-period): one update every 8 steps, half the paper's rate: the
    # loop, which waits on the updates on a CPU, runs 1.8 times as fast (Tianshou updates
    # every 10 steps, with 3-step targets).
    train_every: int = 8
    """agent steps between two gradient updates (paper: 4)."""
    # Deviation (target-update): the paper copies every 10,000 steps; Breakout's 1,000
    # is every 250 updates, and at one update every 8 steps 2,000 keeps that.
    target_update_every: int = 2_000
    """agent steps between copies of the online network into the target network
    (paper: 10,000)."""
    # Deviation (adam): the paper used RMSProp (learning rate 0.00025, momentum 0.95);
    # CleanRL's Adam at 1e-4 learns faster and is less sensitive to its settings.
    learning_rate: float = 1e-4
    """Adam learning rate (paper: RMSProp at 0.00025)."""
    gamma: float = 0.99
    """discount factor per agent step (paper: 0.99)."""
    eps_start: float = 1.0
    """exploration rate epsilon when learning starts, where its decay begins; play is
    uniformly random before (paper: 1.0)."""
    # Deviation (exploration): the paper falls to 0.1 over 1,000,000 steps (its table says
    # "frames", but DeepMind's code counts agent steps and starts when learning starts);
    # ours falls to 0.01 four times faster, so that the agent's own play dominates early.
    eps_end: float = 0.01
    """exploration rate after the decay (paper: 0.1)."""
    # Deviation (exploration): a quarter of the paper's decay, as said above.
    eps_decay_steps: int = 250_000
    """agent steps, counted from learning_starts, over which epsilon falls linearly to
    eps_end (paper: 1,000,000)."""
    # Deviation (gradient-clipping): the paper clips no gradient; Stable-Baselines3 does.
    max_gradient_norm: float = 10.0
    """gradients are rescaled to at most this global norm (the paper has no such
    clipping)."""
    double_dqn: bool = False
    """Double DQN's target (van Hasselt et al., 2016): the online network picks the next
    action, the target network values it; off, as in the paper."""
    # Deviation (n-step): the paper's targets look one step ahead; Pong's rewards come
    # tens of steps after the hit that earned them, and 3-step targets carry them back
    # sooner (Rainbow and Tianshou use 3).
    n_step: int = 3
    """rewards each target sums before it bootstraps, gamma^N times the value N steps on
    (n-step returns; Rainbow, Hessel et al., 2018, uses 3; the paper: 1)."""
    dueling: bool = False
    """the dueling network of Wang et al. (2016): a state-value and an action-advantage
    stream; off, as in the paper."""
    # Deviation (acting-beside-learning): the paper acts with the newest weights.
    overlap_updates: bool = True
    """run each update on a worker thread while the agent plays on (faster; the agent may
    act with weights one update old)."""
    deterministic: bool = False
    """repeat a run exactly, given the same seed, machine and TensorFlow version: exact
    TensorFlow ops and every update in turn (implies --no-overlap-updates; slower)."""
    video_every: int = 100
    """record every N-th game as an MP4 (0: never)."""
    video_dir: str = "videos/pong"
    """folder for the MP4 recordings."""
    run_dir: str = "runs/pong"
    """folder for progress.csv, TensorBoard logs, checkpoints and model.keras."""
    log_every_games: int = 10
    """print a console line every N finished games."""
    checkpoint_every: int = 50_000
    """agent steps between checkpoints (each about 27 MB without the replay memory)."""
    resume: bool = False
    """continue the run saved in --run-dir from its latest checkpoint."""
    save_replay: bool = False
    """also save the replay memory with each checkpoint, so a resume need not refill it:
    0.71 GB each at 100,000 transitions, and up to 4 on disk at once (2.8 GB: the 3 kept
    and the one being written); free disk space is checked before each."""
    evaluate: str = ""
    """instead of training, play a saved agent: a .keras file or a run folder."""
    plot: list[str] = field(default_factory=list)
    """instead of training, draw the learning curves of these run folders (overlaid) as a PNG."""
    # Deviation (evaluation-games): the paper scores 30 games; 10 take a third of the time.
    episodes: int = 10
    """games to play with --evaluate (the paper played 30)."""
    eval_epsilon: float = 0.05
    """exploration rate while evaluating (paper: 0.05)."""


"""
## Environment

`make_env` applies the DeepMind preprocessing (see `common/atari.py` for each
step): 1 to 30 random no-ops at the start of a game, every action repeated for
4 frames with the pixel-wise maximum of the last two frames as the observation
(Atari sprites flicker), a lost life ending the learning episode while the game
goes on (Pong has no lives, so its episodes are whole games), FIRE pressed
after each reset in every game that has it (a departure from the paper),
rewards clipped to -1, 0 or +1 (Pong's are already), 84x84 grayscale frames and
a stack of the last 4 of them. The score we report is the raw score of a whole
game (21 points, the agent's minus the opponent's); gymnasium's
`RecordEpisodeStatistics` puts it in `info["episode"]["r"]` when a game ends.
"""

"""
## Q-network

The network of the paper: three convolutions and a 512-unit layer, with one
linear output per action. The number of actions is read from the environment
(Pong has 6: NOOP, FIRE, RIGHT, LEFT, RIGHTFIRE, LEFTFIRE). The target network is a second copy
of the same architecture. `--dueling`, an option beyond the paper and off by
default, builds the dueling network of Wang et al. (2016) instead: a state-value
stream and an action-advantage stream after the convolutions.
"""

"""
## Replay memory

Learning from consecutive frames would show the network a long run of almost
identical states; sampling uniformly from the last 100,000 transitions breaks
those correlations (the paper kept a million; Lapan's and Tianshou's Pong
settings keep 100,000). `ReplayMemory` stores each 84x84 frame once (7 KB) with
its action, clipped reward and terminated flag, and rebuilds the 4-frame stacks
when it samples, so 100,000 transitions take about 0.71 GB instead of the 5.6 GB
of storing two stacks per transition. With 3-step targets it also reads the two
transitions after each sampled one, to sum their rewards.
"""

"""
## Training step

`make_train_step` returns a `tf.function` that does one update on a batch: the
3-step target
`y = r_t + gamma r_t+1 + gamma^2 r_t+2 + gamma^3 max_a' Q_target(s_t+3, a') * (1 - terminated)`,
the Huber loss between `y` and `Q(s_t, a_t)` under a `GradientTape` (the paper's
error clipping), gradient clipping and the optimizer step: Keras' Adam, which
`FusedAdam` applies with one fused TensorFlow kernel (the same arithmetic, a
little faster on a CPU). The replay memory sums the three rewards; the update
only sees `gamma^m` for the bootstrap. Only a real end of the learning episode
(`terminated`) cuts the sum and the bootstrap; a game stopped by the time limit
(`truncated`) still looks ahead, from the state where it was cut.

The paper's target looks one step ahead,
`y = r + gamma * max_a' Q_target(s', a') * (1 - terminated)` (`--n-step 1`). Pong
uses three (a deviation): a point is scored tens of steps after the hit that won
it, and a 3-step target carries that reward back three steps per update of the
target instead of one.

Acting calls the network through a `tf.function` too: 1 to 2 ms a step on a 2-core
Intel Xeon, where `model.predict` cost about 110.

`BackgroundLearner` runs each update on a worker thread while the agent plays
the next eight steps, since on a CPU an update takes as long as those eight steps
or longer. The updates are the same, in the same order; the agent may then act with
weights one update old, where the paper acts with the newest (a deviation, marked
in `common/dqn.py`). The learner
lets the running update finish before the target network is synced or a
checkpoint is taken.
`--no-overlap-updates` runs every update in turn, as the paper does.

One more option beyond the paper changes the target, off by default:
`--double-dqn` lets the online network choose the next action and the target
network value it (van Hasselt et al., 2016).
"""


def epsilon_at(step: int, config: Config) -> float:
    """The exploration rate after `step` agent steps.

    It is 1 (uniformly random play) while the memory first fills, then falls linearly
    from `eps_start` to `eps_end` over `eps_decay_steps` steps and stays there. A
    resumed run that refills its memory plays at the epsilon of its step.
    """
    if step < config.learning_starts:
        return 1.0
    if config.eps_decay_steps == 0:
        return config.eps_end
    fraction = min((step - config.learning_starts) / config.eps_decay_steps, 1.0)
    return config.eps_start + fraction * (config.eps_end - config.eps_start)


"""
## Training loop

The loop below is the whole algorithm: choose an action epsilon-greedily, play
it, store the transition, learn every `train_every` steps once the memory holds
`learning_starts` transitions, copy the online network into the target every
`target_update_every` steps. Games are counted when the real game ends (one
side reaches 21 points), and the *running reward* is the mean raw score of the last 100 of
them. Training stops when it reaches `solved_at` over a full window of 100
games, or after `total_steps`.

The run's bookkeeping (opening or resuming the run folder, checkpoints, logs,
the final model) is `common/run.py`'s `Run`; every line below is the algorithm.
"""


def train(config: Config, on_game=None) -> dict:
    """Trains a DQN agent as configured; returns a summary of the run.

    `on_game(row)`, if given, gets each finished game's logged values (a dict).
    """
    run = Run(config, on_game)  # refuses a bad resume or an occupied folder before any work
    config = run.config  # on --resume: the run's saved settings, with the changes allowed
    seed_everything(config.seed, config.deterministic)  # the initial weights too
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=config.video_every,
                   first_game=run.games_played + 1)
    num_actions = int(env.action_space.n)  # Pong: 6
    observation_shape = env.observation_space.shape  # (84, 84, 4): the last 4 frames
    q_network = build_q_network(observation_shape, num_actions, dueling=config.dueling)
    target_network = build_q_network(observation_shape, num_actions, name="target_network",
                                     dueling=config.dueling)
    optimizer = FusedAdam(learning_rate=config.learning_rate)  # Keras' Adam, one fused kernel
    greedy_actions = make_greedy_policy(q_network)
    train_step = make_train_step(q_network, target_network, optimizer, config.gamma,
                                 config.max_gradient_norm, config.double_dqn)
    learner = BackgroundLearner(train_step, make_target_sync(q_network, target_network),
                                overlap=config.overlap_updates)
    memory = ReplayMemory(config.buffer_size, frame_shape=observation_shape[:-1],
                          history_length=observation_shape[-1], seed=config.seed,
                          n_step=config.n_step, discount=config.gamma)
    # A new run starts with the target network equal to the online one; a resume restores
    # the networks, optimizer, counts, exploration state and, if saved, the memory. Learning
    # waits for learning_starts transitions (after a resume, unless the memory was restored).
    state = run.start_or_restore(q_network, target_network, optimizer, memory, learner, env)
    learn_from_step = first_learning_step(state.step, config.learning_starts, run.memory_restored)

    observation, _ = env.reset(seed=config.seed + state.games)
    with GracefulStop() as stop, run, learner, env:
        while state.step < config.total_steps and not stop.requested:  # Ctrl-C: save, stop
            # Act epsilon-greedily, play the action, remember the transition.
            epsilon = epsilon_at(state.step, config)
            action = choose_action(greedy_actions, observation, epsilon, state.rng, num_actions)
            next_observation, reward, terminated, truncated, info = env.step(action)
            memory.add(observation, action, reward, next_observation, terminated, truncated)
            observation = next_observation
            if terminated or truncated:  # a life lost, or the game over: next episode
                observation, reset_info = env.reset()
                info = {**reset_info, **info}  # a game may end in reset's no-op or FIRE
            state.step += 1

            # Learn from a random batch of past transitions; now and then refresh the target.
            if state.step % config.train_every == 0 and state.step >= learn_from_step:
                learner.update(memory.sample(config.batch_size))
            if state.step % config.target_update_every == 0:
                learner.sync_target()

            # A whole game (all lives) ended: log its raw score, and stop once solved.
            if "episode" in info:
                state.record_game(float(info["episode"]["r"]))
                run.log_game(state, epsilon, learner)
                if state.solved(config.solved_at):
                    break
            run.after_step(state, epsilon, memory, greedy_actions)  # held-out Q, progress line
            if state.step % config.checkpoint_every == 0:
                run.save(state, memory, learner)
    return run.finish(state, stop, q_network, memory, learner)


"""
## Evaluation and video

The paper scores an agent over 30 games with epsilon 0.05, random no-op starts
and at most 5 minutes of play (18,000 frames) per game. `evaluate` plays
`--episodes` such games with a saved network, records each as an MP4 and prints
the mean and standard deviation of the raw scores.
"""


def evaluate(config: Config) -> list[float]:
    """Plays `config.episodes` games with a saved agent; returns their raw scores."""
    config = settings_for_evaluation(config)  # a run folder's own --dueling, --n-step, ...
    seed_everything(config.seed, config.deterministic)
    env = make_env(config.env_id, video_dir=config.video_dir, video_every=1,
                   video_label="evaluation",  # keeps these apart from the training videos
                   max_frames_per_game=5 * 60 * 60)  # 5 minutes at 60 frames a second
    num_actions = int(env.action_space.n)
    q_network = load_agent(config.evaluate, config.env_id, env.observation_space.shape,
                           num_actions, build_q_network, dueling=config.dueling)
    greedy_actions = make_greedy_policy(q_network)
    rng = np.random.default_rng(config.seed)
    scores = []
    observation, _ = env.reset(seed=config.seed)
    with GracefulStop("stopping; the unfinished game is not scored") as stop, env:
        while len(scores) < config.episodes and not stop.requested:
            action = choose_action(greedy_actions, observation, config.eval_epsilon, rng,
                                   num_actions)
            observation, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                observation, reset_info = env.reset()
                info = {**reset_info, **info}  # a game may end in reset's no-op or FIRE
            if "episode" in info:
                scores.append(float(info["episode"]["r"]))
                print(f"game {len(scores)}: score {scores[-1]:g}", flush=True)
    if scores:
        print(f"Mean score {np.mean(scores):.2f}, standard deviation {np.std(scores):.2f}, "
              f"over {plural(len(scores), 'game')}. Videos in {config.video_dir}.", flush=True)
    if stop.requested:
        raise Interrupted(stop.signal_name, f"after {len(scores)} of {config.episodes} games")
    return scores


def main(argv=None) -> int:
    """Runs training or evaluation as the command line says; returns the exit status."""
    return command_line(Config, train, evaluate, "Deep Q-Learning for Atari Pong.", argv)


if __name__ == "__main__":
    exit_with(main())
