"""The SLURM recipe (docs/slurm_pretrain.sbatch) under a fake SLURM on this machine.

`scontrol` and `srun` are stubs on PATH (`scontrol requeue` is recorded; `srun` runs its command as one
task, forwards USR1 to it and turns a TERM into a SIGKILL of the task, as srun does); the
batch script starts `torchrun --nproc_per_node 2` (gloo, CPU) on a tiny synthetic benchmark and is sent
the signal as SLURM sends it with `--signal=B:USR1@...`: to the batch shell only. Then: the checkpoint of
the step reached, the documented exit status, the requeue, no worker left alive, and the requeued job (the
same script, the same arguments) ending exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mcl_video.cli import main
from mcl_video.training import list_checkpoints, load_checkpoint
from mcl_video.training.preempt import EXIT_STOPPED

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "docs" / "slurm_pretrain.sbatch"
JOB_ID = "4242"
STEPS = 24  # 2 steps per epoch (8 videos, 2 processes x batch 2): the signal comes well before the end

SCONTROL = """#!/bin/bash
case "$1" in
  show) echo localhost ;;
  requeue) echo "$*" >> "$FAKE_SLURM_LOG" ;;
  *) echo "fake scontrol: unexpected arguments: $*" >&2; exit 1 ;;
esac
"""
SRUN = """#!/bin/bash
# one task on this node; like srun, forward USR1/USR2 to it and answer TERM with a SIGKILL of the task
while [ "${1#-}" != "$1" ]; do shift; done
"$@" &
task=$!
trap 'kill -USR1 $task' USR1
trap 'kill -USR2 $task' USR2
trap 'echo "srun: forcing job termination" >&2; kill -KILL $task' TERM
while kill -0 $task 2>/dev/null; do wait $task; done
wait $task
"""


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A tiny UCF101-format benchmark, its motion cache and a fake SLURM (stub commands, requeue log)."""
    base = tmp_path_factory.mktemp("cluster")
    assert main(["synth", str(base / "data"), "--classes", "2", "--train-per-class", "4", "--test-per-class",
                 "2", "--frames", "40", "--workers", "1"]) == 0
    assert main(["prepare", str(base / "data" / "videos"), "--out", str(base / "motion"), "--clip-len", "8",
                 "--stride", "2", "--no-progress"]) == 0
    stubs = base / "bin"
    stubs.mkdir()
    for name, text in (("scontrol", SCONTROL), ("srun", SRUN)):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sbatch(bench: Path, out: Path, tiny: list[str]) -> subprocess.Popen:
    """Start the recipe with the overrides `tiny` as slurmstepd starts a batch script: its own session,
    SLURM_* set."""
    args = [*tiny, "epochs=30", f"max_steps={STEPS}", "checkpoint_every=100",
            f"data={bench / 'data' / 'annotations'}", f"cache={bench / 'motion'}", f"out={out}"]
    env = {**os.environ, "SLURM_JOB_ID": JOB_ID, "SLURM_NNODES": "1", "SLURM_JOB_NODELIST": "localhost",
           "MCL_NPROC_PER_NODE": "2", "MCL_RDZV_PORT": str(_free_port()), "OMP_NUM_THREADS": "1",
           "FAKE_SLURM_LOG": str(bench / "requeue.log"),
           "PATH": os.pathsep.join([str(bench / "bin"), str(Path(sys.executable).parent),
                                    os.environ["PATH"]]),
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(["bash", str(RECIPE), "--config", "demo_cpu", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def finish(job: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    try:
        out, err = job.communicate(timeout=timeout)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    return job.returncode, out + err


def processes_naming(text: str) -> list[str]:
    """`pid: command line` of every live process whose command line contains `text` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = next(line for line in (entry / "status").read_text().splitlines()
                             if line.startswith("State:"))
            except (OSError, StopIteration):
                continue  # ended meanwhile
            if text in cmdline and "zombie" not in state:
                found.append(f"{entry.name}: {cmdline}")
    return found


def wait_for_first_step(job: subprocess.Popen, run: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        if job.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no training step logged (exit {job.poll()}):\n{finish(job, 5)[1]}")
        time.sleep(0.05)


def requeues(bench: Path) -> list[str]:
    """The `scontrol requeue` calls the stub recorded so far."""
    log = bench / "requeue.log"
    return log.read_text().splitlines() if log.is_file() else []


def final_state(run: Path) -> dict:
    return load_checkpoint(list_checkpoints(run)[-1])


@pytest.mark.slow
def test_preempted_job_checkpoints_exits_75_requeues_and_resumes_exactly(bench, tmp_path, tiny_pretrain_args):
    run = tmp_path / "run"
    job = sbatch(bench, run, tiny_pretrain_args)
    wait_for_first_step(job, run)
    os.kill(job.pid, signal.SIGUSR1)  # --signal=B:USR1@180: to the batch shell only
    status, log = finish(job)

    assert status == EXIT_STOPPED == 75, log
    assert processes_naming(str(run)) == []  # torchrun and both workers ended with the batch script
    assert requeues(bench) == [f"requeue {JOB_ID}"]
    (step,) = [load_checkpoint(p)["step"] for p in list_checkpoints(run)]  # the stop's checkpoint
    assert 1 <= step < STEPS
    assert f"stopped by SIGUSR1 after step {step} of {STEPS}" in log, log  # batch shell -> srun -> torchrun

    # SLURM starts the requeued job: the same script with the same arguments
    status, log = finish(sbatch(bench, run, tiny_pretrain_args))
    assert status == 0, log
    assert requeues(bench) == [f"requeue {JOB_ID}"]  # not requeued again
    resumed = final_state(run)
    assert resumed["step"] == STEPS and resumed["env"]["resume_history"][0]["step"] == step

    # the same job, never interrupted
    status, log = finish(sbatch(bench, tmp_path / "ref", tiny_pretrain_args))
    assert status == 0, log
    reference = final_state(tmp_path / "ref")
    assert reference["model"].keys() == resumed["model"].keys()
    for name, value in reference["model"].items():
        assert torch.equal(value, resumed["model"][name]), name


@pytest.mark.slow
def test_workers_stop_with_a_checkpoint_when_torchrun_is_killed(bench, tmp_path, tiny_pretrain_args):
    # SIGKILL cannot be forwarded: the kernel's parent-death signal (SIGTERM) stops the workers instead
    run, before = tmp_path / "run", requeues(bench)
    job = sbatch(bench, run, tiny_pretrain_args)
    wait_for_first_step(job, run)
    (launcher,) = [int(p.split(":")[0]) for p in processes_naming(str(run))
                   if "torchrun" in p and "bin/srun" not in p]
    os.kill(launcher, signal.SIGKILL)
    status, log = finish(job)
    assert status == 128 + signal.SIGKILL, log  # not a stop the script asked for: no requeue, no 75
    assert requeues(bench) == before
    deadline = time.monotonic() + 60
    while processes_naming(str(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_naming(str(run)) == []
    (step,) = [load_checkpoint(p)["step"] for p in list_checkpoints(run)]
    assert 1 <= step < STEPS


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_mcl_pretrain_alone_exits_75_on_a_stop_signal(bench, tmp_path, sig, tiny_pretrain_args):
    # without torchrun or SLURM: the exit status that `pretrain && evaluate` sees. The signal goes to the
    # whole process group, as torchrun sends it, so the DataLoader worker gets it too and must leave the
    # stop to the main process.
    run = tmp_path / "run"
    args = [*tiny_pretrain_args, "num_workers=1", "epochs=30", f"max_steps={STEPS}", "checkpoint_every=100",
            f"data={bench / 'data' / 'annotations'}", f"cache={bench / 'motion'}", f"out={run}"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.Popen([sys.executable, "-m", "mcl_video", "pretrain", *args], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    wait_for_first_step(job, run)
    os.killpg(job.pid, sig)
    status, log = finish(job)
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert status == EXIT_STOPPED and "Traceback" not in log, log
    (step,) = [load_checkpoint(p)["step"] for p in list_checkpoints(run)]
    assert errors == [f"error: stopped by {sig.name} after step {step} of {STEPS}; its checkpoint is in "
                      f"{run}: continue with resume=true"]
