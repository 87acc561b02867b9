"""Slurm: JobAgents submitted with ``sbatch``, followed with ``squeue``, cancelled with
``scancel``; the parsable output formats only (``--parsable``, ``--format``).

Our agents are the jobs of this Unix user with the configured job name, so several VoBoxes
(or other users) may share the cluster. ``SLURM_CONF`` in *env* points the commands at a
cluster's configuration (the test cluster of ``build/slurm``).
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping, Sequence
from pathlib import Path

from jalien.site.batch import AgentState, BatchError, BatchJob, run_command

QUEUED = {"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}
RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}


class SlurmBatch:
    name = "slurm"

    def __init__(
        self,
        job_name: str,
        *,
        partition: str = "",
        options: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        bin_dir: str = "",
        user: str = "",
    ) -> None:
        self.job_name = job_name
        self.partition = partition
        self.options = list(options)
        self.env = dict(env or {})
        self.bin_dir = bin_dir
        self.user = user or getpass.getuser()

    def _cmd(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    async def submit(self, script: Path, log: Path, job_name: str) -> str:
        argv = [
            self._cmd("sbatch"),
            "--parsable",
            f"--job-name={job_name or self.job_name}",
            f"--output={log}",
            f"--chdir={script.parent}",
        ]
        if self.partition:
            argv.append(f"--partition={self.partition}")
        argv += [*self.options, str(script)]
        out = (await run_command(argv, env=self.env)).strip()
        job_id = out.split(";", 1)[0].strip()  # "<id>[;<cluster>]"
        if not job_id.isdigit():
            raise BatchError(f"sbatch answered {out!r}, not a job id")
        return job_id

    async def jobs(self) -> list[BatchJob]:
        argv = [
            self._cmd("squeue"),
            "--noheader",
            f"--user={self.user}",
            f"--name={self.job_name}",
            "--format=%i|%T",
        ]
        out = await run_command(argv, env=self.env)
        found: list[BatchJob] = []
        for line in out.splitlines():
            job_id, _, state = line.strip().partition("|")
            if state in RUNNING:
                found.append(BatchJob(job_id, AgentState.RUNNING))
            elif state in QUEUED:
                found.append(BatchJob(job_id, AgentState.QUEUED))
        return found

    async def cancel(self, job_id: str) -> None:
        if not job_id.isdigit():
            raise BatchError(f"slurm: {job_id!r} is not a job id")
        await run_command([self._cmd("scancel"), job_id], env=self.env)
