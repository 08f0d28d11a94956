"""What a user sees of a run's learning: the start banner, the progress lines, the
held-out Q curve, progress.png, and `--plot` on finished runs (issue 11).

The `--plot` tests call the script's `main()` in this process on made-up run folders;
the real script's banner, progress lines, held-out Q and progress.png are checked on
the shared smoke run of `tests/test_scripts.py`, and their resume in its SIGTERM test.
"""

import breakout_dqn

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROGRESS_HEADER = ("step,game,score,running_reward,epsilon,loss,mean_q,steps_per_second,"
                   "elapsed_seconds\n")


def make_run(folder, games):
    folder.mkdir(parents=True)
    rows = "".join(f"{200 * game},{game},{game % 3},1.0,1.0,0.1,0.2,100.0,{game}.0\n"
                   for game in range(1, games + 1))
    (folder / "progress.csv").write_text(PROGRESS_HEADER + rows)
    (folder / "heldout_q.csv").write_text("step,heldout_q\n500,0.1\n1000,0.2\n")
    return folder


def test_plot_draws_one_run_into_its_folder(tmp_path, capsys):
    run = make_run(tmp_path / "seed1", games=5)
    assert breakout_dqn.main(["--plot", str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"Wrote {run / 'progress.png'}"
    assert (run / "progress.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_overlays_several_runs_in_comparison_png(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first, second = make_run(tmp_path / "seed1", 5), make_run(tmp_path / "seed2", 3)
    assert breakout_dqn.main(["--plot", str(first), str(second)]) == 0
    assert capsys.readouterr().out.strip() == "Wrote comparison.png"
    assert (tmp_path / "comparison.png").read_bytes()[:8] == PNG_SIGNATURE


def test_plot_of_a_folder_that_is_no_run_is_one_line_and_status_2(tmp_path, capsys):
    (tmp_path / "videos").mkdir()
    assert breakout_dqn.main(["--plot", str(tmp_path / "videos")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "holds no progress.csv" in error
