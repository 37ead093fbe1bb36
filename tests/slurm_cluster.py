"""A one-node SLURM cluster on localhost for tests: munged, slurmctld and slurmd with a generated slurm.conf
(state and spool in a temporary directory), started as root and torn down after. `start` returns None with
the reason when the cluster cannot start here (no slurm-wlm/munge, not root), so tests skip cleanly."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONF = """\
ClusterName=ablations
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
JobRequeue=1
KillWait=30
# a requeued job may start again after cred_expire seconds (default 120), once a scheduler pass sees it
AuthInfo=cred_expire=10
SchedulerParameters=bf_interval=2,sched_interval=2
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
NodeName={host} CPUs=2 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

FINISHED = {  # the states of a job that has ended
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
}


@dataclass
class Cluster:
    root: Path
    env: dict[str, str]
    processes: list[subprocess.Popen]

    def run(self, *args: str, check: bool = True) -> str:
        done = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=60)
        if check and done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {done.stderr}")
        return done.stdout

    def sbatch(self, *args: str) -> str:
        """Submit; returns the job id."""
        return self.run("sbatch", "--parsable", *args).strip().split(";")[0]

    def tasks(self, job_id: str) -> list[dict[str, str]]:
        """`scontrol show job` of each task of a job (slurmctld keeps finished ones for `MinJobAge`, 300 s);
        none while slurmctld does not answer."""
        shown = self.run("scontrol", "show", "job", "-o", job_id, check=False)
        return [
            dict(item.split("=", 1) for item in line.split() if "=" in item) for line in shown.splitlines()
        ]

    def wait_finished(self, job_id: str, timeout: float) -> None:
        """Until every task of the job has ended (a requeued job has not: it is pending again)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            tasks = self.tasks(job_id)
            if tasks and all(task["JobState"] in FINISHED for task in tasks):
                return
            time.sleep(1)
        raise TimeoutError(f"SLURM job {job_id} not finished after {timeout} s:\n{self.logs()}")

    def exit_codes(self, job_id: str) -> dict[str, str]:
        """`ExitCode` (`code:signal`) of each task of a finished job, by array index ("" outside an array)."""
        return {task.get("ArrayTaskId", ""): task["ExitCode"] for task in self.tasks(job_id)}

    def batch_pid(self, job_id: str) -> int:
        """The process of a running job's batch script (the program it `exec`s): the first of its step."""
        rows = [line.split() for line in self.run("scontrol", "listpids", job_id).splitlines()[1:]]
        return min(int(row[0]) for row in rows if row[2] == "batch")

    def logs(self) -> str:
        return "\n".join(
            f"--- {f.name}\n{f.read_text()[-3000:]}" for f in sorted(self.root.glob("*.log")) if f.is_file()
        )

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in reversed(self.processes):
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def start(root: Path) -> Cluster | str:
    """A running cluster, or why there cannot be one here."""
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(tool) is None]
    if missing:
        return f"not installed: {missing} (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the test cluster runs its daemons as root"
    host = socket.gethostname().split(".")[0]
    for sub in ("state", "spool", "munge"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    conf = root / "slurm.conf"
    conf.write_text(CONF.format(host=host, root=root, ctld_port=_free_port(), d_port=_free_port()))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    processes: list[subprocess.Popen] = []
    munge = _munge(root, processes)
    if munge is not None:
        return munge
    processes.append(
        subprocess.Popen(["slurmctld", "-D", "-f", str(conf)], env=env, stderr=subprocess.DEVNULL)
    )
    processes.append(subprocess.Popen(["slurmd", "-D", "-f", str(conf)], env=env, stderr=subprocess.DEVNULL))
    cluster = Cluster(root, env, processes)
    deadline = time.time() + 60
    while time.time() < deadline:
        state = cluster.run("sinfo", "-h", "-o", "%T", check=False).strip()
        if state in ("idle", "mixed", "allocated"):
            return cluster
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(1)
    logs = cluster.logs()
    cluster.stop()
    return f"the cluster did not come up:\n{logs[-2000:]}"


def _munge(root: Path, processes: list[subprocess.Popen]) -> str | None:
    """munged with a fresh key and socket in `root` (as root, `--force`: the test owns it)."""
    key, socket_path = root / "munge" / "munge.key", Path("/run/munge/munge.socket.2")
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return None  # a munged already answers on the default socket
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    processes.append(
        subprocess.Popen(
            ["munged", "-F", "--force", f"--key-file={key}", f"--socket={socket_path}",
             f"--pid-file={root / 'munge' / 'munged.pid'}", f"--log-file={root / 'munge.log'}",
             f"--seed-file={root / 'munge' / 'seed'}"],
            stderr=subprocess.DEVNULL,
        )
    )  # fmt: skip
    for _ in range(50):
        if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
            return None
        time.sleep(0.2)
    return "munged did not start"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
