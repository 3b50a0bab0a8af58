"""The deployment examples under deploy/ parse and run one `hpo worker` per GPU with the secrets by
environment."""

from __future__ import annotations

import subprocess

import yaml

from tests.support import REPO

DEPLOY = REPO / "deploy"


def test_kubernetes_job_runs_one_worker_per_gpu_with_the_storage_from_a_secret() -> None:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes-workers.yaml").read_text()))
    assert len(docs) == 1
    job = docs[0]
    assert job["apiVersion"] == "batch/v1" and job["kind"] == "Job"
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][:2] == ["hpo", "worker"] and "--study" in container["command"]
    assert "--storage" not in container["command"]  # never the URL on a command line
    env = {e["name"]: e for e in container["env"]}
    assert "secretKeyRef" in env["OPTUNA_STORAGE"]["valueFrom"]
    assert "secretKeyRef" in env["HPO_MLFLOW_URI"]["valueFrom"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert job["spec"]["parallelism"] >= 1 and pod["restartPolicy"] in ("OnFailure", "Never")


def test_slurm_array_script_is_valid_bash_and_runs_one_worker_per_gpu() -> None:
    script = DEPLOY / "slurm-workers.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    directives = [line for line in text.splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --gpus-per-task=1" in directives
    assert any(d.startswith("#SBATCH --array=") for d in directives)
    assert "exec hpo worker --study" in text and "--storage" not in text.split("set -euo")[1]
    assert "export OPTUNA_STORAGE" in text
