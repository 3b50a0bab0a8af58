"""The GPU device's way to run a study, emulated on CPU: the wheelhouse (scripts/wheelhouse.py) installed
offline by scripts/device_run.sh into a fresh "image" that has only torch, transformers and peft, then
`hpo tune --no-mlflow` on the tiny config. Needs the package registry (the wheelhouse and the image's
transformers/peft are downloaded; torch==2.13.0 comes from local disk): ~3 minutes on 2 cores."""

from __future__ import annotations

import subprocess
import sys
import venv
from importlib import metadata
from pathlib import Path

import optuna
import pytest

from tests.support import CI_CONFIG, REPO, quiet_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"
DEVICE_RUN = str(REPO / "scripts" / "device_run.sh")


def _run(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env or quiet_env(), cwd=cwd)


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The wheelhouse for this interpreter's Python (one version: the shortest build), and what it printed."""
    dest = tmp_path_factory.mktemp("wh") / "wheelhouse"
    res = _run(
        [sys.executable, str(REPO / "scripts" / "wheelhouse.py"), "--dest", str(dest), "--python-version", PY]
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return dest, res.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with what the device image has: torch (the local CPU build), transformers, peft (the
    versions installed here), installed normally with their own dependencies, nothing else."""
    root = tmp_path_factory.mktemp("image") / "venv"
    venv.create(root, with_pip=True)
    python = root / "bin" / "python"
    pins = [f"torch=={metadata.version('torch').split('+')[0]}"]
    pins += [f"{name}=={metadata.version(name)}" for name in ("transformers", "peft")]
    res = _run([str(python), "-m", "pip", "install", "--quiet", *pins])
    assert res.returncode == 0, res.stderr[-3000:]
    return python


def test_wheelhouse_fits_the_carry_budget_without_the_heavy_dependencies(
    wheelhouse: tuple[Path, str],
) -> None:
    dest, printed = wheelhouse
    names = {p.name.split("-")[0].lower() for p in dest.glob("*.whl")}
    assert {"hpo", "optuna", "typer", "pydantic", "sqlalchemy", "nvidia_ml_py"} <= names
    assert not names & {"mlflow", "datasets", "pyarrow", "pandas", "torch", "transformers", "peft", "numpy"}
    assert (dest / f"requirements-cp{PY.replace('.', '')}.txt").is_file()
    size = sum(p.stat().st_size for p in dest.iterdir())
    assert size < 64 * 2**20 and "MiB of the 64 MiB carry budget" in printed


def test_device_run_installs_offline_and_runs_a_study(
    wheelhouse: tuple[Path, str], image: Path, tmp_path: Path
) -> None:
    out, site, runs = tmp_path / "out", tmp_path / "site", tmp_path / "runs"
    env = quiet_env() | {
        "OUT": str(out),
        "HPO_DEVICE_PYTHON": str(image),
        "HPO_WHEELHOUSE": str(wheelhouse[0]),
        "HPO_DEVICE_SITE": str(site),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    env.pop("PYTHONPATH", None)
    tune = [
        "hpo",
        "tune",
        "--config",
        str(CI_CONFIG),
        "--output-dir",
        str(runs),
        "--n-trials",
        "2",
        "--no-mlflow",
    ]
    res = _run(["bash", DEVICE_RUN, *tune], env=env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "study ci-tiny: 2 finished (2 new)" in res.stdout
    assert (runs / "ci-tiny-report.html").is_file()  # plotly is shipped
    study = optuna.load_study(study_name="ci-tiny", storage=f"sqlite:///{runs / 'hpo.db'}")
    assert len([t for t in study.trials if t.state.is_finished()]) == 2
    assert any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    probe = (out / "device-probe.txt").read_text()
    assert "## pip list --format=freeze" in probe and f"Python {PY}" in probe and "torch==" in probe

    # what the study ran on: the image plus the wheelhouse, no mlflow, no datasets, hpo from the wheel
    check = (
        "import importlib.util as u, hpo; print(u.find_spec('mlflow'), u.find_spec('datasets'), hpo.__file__)"
    )
    res = _run(
        [str(image), "-c", check], env=env | {"PYTHONPATH": str(site)}, cwd=tmp_path
    )  # not the checkout
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[:2] == ["None", "None"] and Path(res.stdout.split()[2]).is_relative_to(site)

    # a second call on the same (warm) machine reuses the install
    res = _run(["bash", DEVICE_RUN, "python", "-c", "print('again')"], env=env)
    assert res.returncode == 0 and "installed from this wheelhouse already" in res.stdout, res.stderr


def test_device_run_names_the_missing_python_version(tmp_path: Path) -> None:
    """A wheelhouse built for other Pythons: the error names the device's version and DEVICE_PYTHON."""
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "WHEELHOUSE").write_text("python: 3.98 3.99\nplatform: manylinux_2_28_x86_64\n")
    env = quiet_env() | {"OUT": str(tmp_path / "out"), "HPO_DEVICE_PYTHON": sys.executable}
    env |= {"HPO_WHEELHOUSE": str(tmp_path / "wh"), "HPO_DEVICE_SITE": str(tmp_path / "site")}
    res = _run(["bash", DEVICE_RUN, "true"], env=env)
    assert res.returncode == 3
    assert f"no wheels for this device's Python {PY}" in res.stderr
    assert f'make wheelhouse DEVICE_PYTHON="3.98 3.99 {PY}"' in res.stderr
    assert (tmp_path / "out" / "device-probe.txt").is_file()  # the probe is written first, whatever follows
