"""Progress output: tqdm on a terminal, periodic plain lines (no carriage returns) elsewhere; the
training bar is labelled by the kind of run."""

import io

from tqdm import tqdm

from mcl_video.evaluation.finetune_config import FinetuneRunConfig
from mcl_video.progress import PlainProgress, progress
from mcl_video.training.config import PretrainConfig
from mcl_video.training.logger import MetricLogger, run_label


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_every_period_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = PlainProgress(total=10, desc="prepare", unit="video", file=out, every_s=30, clock=clock)
    for _ in range(4):
        clock.t += 10  # 10 s per video
        bar.update(1)
        bar.set_postfix(failed=0)
    clock.t += 10
    bar.update(1)
    bar.close()
    bar.close()  # once
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines == ["prepare: 3/10 video (30%), 0.1 video/s, failed=0",  # at 30 s
                     "prepare: 5/10 video (50%), 0.1 video/s, failed=0"]  # closed at 50 s


def test_progress_picks_tqdm_only_for_a_terminal():
    plain = progress(total=3, desc="x", file=io.StringIO())
    assert isinstance(plain, PlainProgress)
    bar = progress(total=3, desc="x", file=Terminal())
    assert isinstance(bar, tqdm)
    bar.close()
    out = io.StringIO()
    assert list(progress(range(3), desc="synth", unit="video", file=out, every_s=1e9)) == [0, 1, 2]
    assert out.getvalue() == "synth: 3/3 video (100%), " + out.getvalue().split(", ", 1)[1]
    assert out.getvalue().count("\n") == 1


def test_the_training_bar_is_labelled_by_the_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MCL_PROGRESS_EVERY", "1e9")  # only the closing line
    finetune = FinetuneRunConfig(backbone="tiny_r2plus1d", log_every=1, tensorboard=False, progress=True)
    assert run_label(finetune) == "finetune" and run_label(PretrainConfig()) == "pretrain"
    logger = MetricLogger(tmp_path, True, 0, 2, finetune, samples_per_step=4)
    logger.step(1, 0, {"loss": 2.0}, 0.5)
    logger.step(2, 0, {"loss": 1.0}, 0.5)
    logger.close()
    err = capsys.readouterr().err
    assert err.startswith("finetune: 2/2 step (100%)") and "loss=1" in err and "\r" not in err


def test_an_empty_todo_list_prints_nothing():
    out = io.StringIO()
    PlainProgress(total=0, desc="prepare", unit="video", file=out).close()
    assert out.getvalue() == ""
