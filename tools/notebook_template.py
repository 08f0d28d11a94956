# The notebook-only cells of notebooks/*.ipynb, which tools/build_notebooks.py puts
# around each game script's own cells. This file is never run as it is.
#
# Its layout: a top-level """string""" is a markdown cell; a line starting with "# %%"
# starts a code cell ("# %% parameters": the cell tagged "parameters", where papermill
# puts its values); a cell holding only "# <<script>>" is where the script's cells go.
# The generator replaces "# <<requirements>>" with the list read from requirements.txt,
# "# <<settings>>" with the settings and their defaults read from the script's Config,
# and "# <<config>>" with the statement that builds a Config from those settings.
# Imports from common are written into the notebook, as the script's are.

# %%
# Installs what this runtime lacks of requirements.txt (Colab has TensorFlow, NumPy and
# matplotlib, but not ale-py); does nothing when everything is importable.
import importlib
import importlib.util
import subprocess
import sys

# <<requirements>>
missing = [requirement for module, requirement in REQUIREMENTS
           if importlib.util.find_spec(module) is None]
if missing:
    print("Installing", " ".join(missing), flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *missing], check=True)
    importlib.invalidate_caches()
else:
    print("Every package this notebook needs is installed.")

"""
## Settings

Change the run here, then run all cells (Runtime > Run all). One *step* is one
agent decision, repeated for 4 emulator frames. The defaults are the script's
`Config` defaults: a full run, many hours long even on a GPU. For a first look,
try `total_steps = 5_000`, `learning_starts = 1_000`, `buffer_size = 10_000` and
`video_every = 1`. `seed` fixes the first network and games; `deterministic = True`
repeats a run exactly on the same machine and software (slower). The last three,
`double_dqn`, `n_step` and `dueling`, are the options beyond the paper, off by
default ([implementation details](https://github.com/<<repository>>/blob/main/docs/implementation-details.md)
says what each changes).
Every other setting of `Config` keeps its default; the training cell shows how to
pass more.
"""

# %% parameters
# <<settings>>
# Colab only: keep run_dir and video_dir on Google Drive, so that they outlive the session.
mount_drive = False
# Games the evaluation after training plays (the paper played 30).
evaluation_games = 2

"""
## Running in Colab

- **Use a GPU.** Runtime > Change runtime type > a GPU, before you run anything.
  On a CPU one update of the network took 14 to 17 ms on a fast, quiet 2-core
  machine, 28 ms on a 2-core Intel Xeon and 46 to 48 ms on a 2-core AMD EPYC
  (measured), so the 250,000 updates of a million steps take 1 to 3.5 hours there
  for the updates alone. We have not measured a GPU.
- **Sessions end.** A free Colab session is capped (at most 12 hours, often less),
  and one left idle disconnects sooner; everything in `/content` goes with it.
  Breakout reached a running reward of 40 after 437,000 to 480,000 steps in our
  three reference runs (0.9 hours on a 2-core CPU to itself). Pong takes longer:
  with its own defaults our two reference runs reached 18 after 860,000 and
  1,420,000 steps (1.7 and 3.0 hours on a 2-core CPU; CleanRL's published DQN curves
  reach 18 at 2.4 to 3.2 million steps). A run may well span more than one session.
- **Keep the run on Google Drive.** Set `mount_drive = True` above: the next cell
  mounts your Drive and puts `run_dir` and `video_dir` in `MyDrive/dqn-atari/`.
  The run saves a checkpoint every `checkpoint_every` steps (see the
  Configuration section). After a disconnect, open the notebook again, set
  `resume = True` and run all cells: training carries on from the last
  checkpoint.
- **Memory.** The replay memory takes 7,064 bytes per transition: about 7.1 GB
  for the paper's 1,000,000, of the roughly 12 GB of RAM of a free session. The
  run refuses to start if it does not fit; lower `buffer_size` if it says so.
"""

# %%
# Mounts Google Drive and moves the run's folders onto it, only when asked and in Colab.
import os
import sys

if mount_drive and "google.colab" in sys.modules:
    from google.colab import drive

    drive.mount("/content/drive")
    drive_folder = "/content/drive/MyDrive/dqn-atari"
    run_dir = os.path.join(drive_folder, run_dir)  # an absolute path stays as it is
    video_dir = os.path.join(drive_folder, video_dir)
    print(f"Run folder {run_dir}, videos in {video_dir}")
elif mount_drive:
    print("mount_drive = True only works in Colab; the folders stay where they are.")

# %%
# <<script>>

"""
## Training, with a live learning curve

The next cell builds the configuration from the settings and trains. Above the
console lines it shows the learning curve (each game's score as a dot, the mean
of the last 100 games as a line, the score at which the game counts as solved
dashed) and the newest recorded game. Both are redrawn in place every few games,
from `progress.csv` and the video folder, so the notebook keeps one picture and
one video however long the run.

To stop, interrupt the kernel (the stop button, or Runtime > Interrupt
execution): the run saves a checkpoint and says so. To go on later, set
`resume = True` in the settings cell and run the training cell again.
"""

# %%
import dataclasses
import glob
import io
import time

from IPython.display import Image, Markdown, Video, display
from matplotlib.figure import Figure

from common.cli import train_or_evaluate
from common.plot import draw_learning_curves, read_run


def recorded_games(video_dir, evaluation=False, since=0.0):
    """The finished recordings in video_dir, in the order of their game numbers.

    Args:
        video_dir: the folder the run writes its MP4 files to.
        evaluation: the evaluation's games instead of the training's.
        since: only files written at or after this time (seconds since the epoch).
    """
    names = sorted(glob.glob("*_game*_score*.mp4", root_dir=video_dir)) if os.path.isdir(
        video_dir) else []
    paths = [os.path.join(video_dir, name) for name in names
             if ("_evaluation_game" in name) == evaluation]
    return [path for path in paths if os.path.exists(path) and os.path.getmtime(path) >= since]


class LiveProgress:
    """The training cell's live output: the learning curve and the newest recorded game.

    Why: a run lasts hours. Each of the two sits in its own display, which `refresh`
    replaces in place (`display_id`), so the notebook holds one picture and one
    video instead of a new one every few games. The video is embedded (its MP4 data
    inside the notebook), because a link to a file would not play in Colab.

    Args:
        config: the run's Config: its run_dir, video_dir and solved_at.
        every_games: redraw after the first game and then every this many games.
    """

    def __init__(self, config, every_games=5):
        self.config = config
        self.every_games = every_games
        self.games_seen = 0
        self.latest_row = None
        self.video_shown = None
        # A bare Figure, not pyplot: the notebook's matplotlib backend stays as it is.
        self.figure = Figure(figsize=(9, 4), dpi=100)
        self.curve = display(Markdown("*The learning curve appears after the first game.*"),
                             display_id=True)
        waiting = (f"*The newest recorded game appears here (one in {config.video_every}).*"
                   if config.video_every else "*No games are recorded (video_every = 0).*")
        self.video = display(Markdown(waiting), display_id=True)

    def update(self, row):
        """Called by train after each finished game with its progress row (a dict)."""
        self.games_seen += 1
        self.latest_row = row
        if self.games_seen == 1 or self.games_seen % self.every_games == 0:
            self.refresh()

    def refresh(self):
        """Redraws the curve from progress.csv and shows the newest video, if newer."""
        if os.path.isfile(os.path.join(self.config.run_dir, "progress.csv")):
            curves = read_run(self.config.run_dir)
            draw_learning_curves(self.figure, [curves], solved_at=self.config.solved_at,
                                 panels=("score",))
            if self.latest_row is not None:
                row = self.latest_row
                self.figure.suptitle(f"game {row['game']:,} at step {row['step']:,}: running "
                                     f"reward {row['running_reward']:.2f}, epsilon "
                                     f"{row['epsilon']:.3f}", fontsize="medium")
            png = io.BytesIO()
            self.figure.savefig(png, format="png", bbox_inches="tight")
            self.curve.update(Image(data=png.getvalue(), format="png"))
        videos = recorded_games(self.config.video_dir)
        if videos and videos[-1] != self.video_shown:
            self.video.update(Video(videos[-1], embed=True, width=320))
            self.video_shown = videos[-1]


class TrainingStopped(Exception):
    """Stops "Run all" (and papermill) when training did not finish: nothing below runs."""

    def _render_traceback_(self):  # IPython shows this one line instead of a traceback
        return [f"TrainingStopped: {self}"]


# %%
# More settings: add them here, e.g. learning_rate=2.5e-4 (see the Configuration section).
# <<config>>
live = LiveProgress(config)
outcome = {}


def train_with_live_curve(config):
    outcome["summary"] = train(config, on_game=live.update)
    return outcome["summary"]


status = train_or_evaluate(config, train_with_live_curve, evaluate)
live.refresh()  # the final curve and the last recorded game
if status != 0 or outcome["summary"]["stopped"]:
    raise TrainingStopped("training did not finish (see the lines above); the cells below "
                          "were not run")

"""
## Evaluation

The agent plays `evaluation_games` games with the paper's protocol (epsilon 0.05,
random no-op starts, at most 5 minutes of play a game), from the run's saved
network (or, while a run is unfinished, its newest checkpoint). Each game is
recorded, and the recordings are shown below.
"""

# %%
evaluation_config = dataclasses.replace(config, evaluate=config.run_dir, episodes=evaluation_games)
evaluation_started = time.time()
status = train_or_evaluate(evaluation_config, train, evaluate)
for path in recorded_games(config.video_dir, evaluation=True, since=evaluation_started - 1):
    display(Markdown(f"`{os.path.basename(path)}`"), Video(path, embed=True, width=320))
