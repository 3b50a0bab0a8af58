"""Every command in README.md and docs/*.md runs as documented.

What is taken from the docs: the fenced code blocks (```bash, ```sh, ```shell, ```console or no language; in a
console block only the lines after a `$ ` prompt), lines joined over a trailing backslash, each line split at
`&&`, `||`, `;` and `|`: every part that starts with `hpo` or `make` (after `VAR=value` prefixes, which become
its environment) is one documented command.

How an `hpo` command runs: in this process through the Typer app (`hpo.commands.app`, what the `hpo` script
calls; one Python start instead of one per command), in a tmp folder laid out like the checkout after
`make demo`:
- `runs/demo` holds the study `criteria-demo`, made first by one real `hpo tune` of the tiny test config
  (`configs/studies/ci-tiny.yaml`: the config-built tiny BERT, 2 trials of 64 examples) under that name;
- `configs/studies/demo.yaml` there is that tiny config, so a documented `hpo tune --config
  configs/studies/demo.yaml ...` resumes the tiny study instead of training MiniLM for minutes; every other
  file of `configs/`, and `data/`, are links to the checkout's;
- `--n-trials N` of `hpo tune` becomes min(N, finished trials of the demo study + 1): each documented resume
  really runs one more trial, not N.
That is the whole substitution; every other option runs as written (`hpo best --evaluate` really retrains the
tiny study's best config and scores it on the test split).

Markers the docs may carry:
- `# long...` as a line's trailing comment, or `<!-- docs-test: long (why) -->` on the line right before a
  fence (every command of that block): the command is parsed and not run. Click parses its arguments exactly
  as for a run (unknown options, bad values and missing required options fail), nothing executes. For
  commands that train for long or need what a test machine lacks (a PostgreSQL server, GPUs, other hosts).
- `# exit N` as a trailing comment: the command must exit with N instead of 0.
A `make` line is dry-run (`make -n`, the install stamp skipped so nothing is built): its targets must exist
and its variables parse; no long target runs.

A documented command added later needs no change here; one that cannot run on a test machine needs a marker.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from hpo.commands import app
from tests.support import CI_CONFIG, REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
STUDY = "criteria-demo"  # the study `make demo` writes (configs/studies/demo.yaml), in runs/demo
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)")
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}
LONG_BLOCK = re.compile(r"<!--\s*docs-test:\s*long\b")
SEPARATORS = {"&&", "||", ";", "|"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
CANDIDATE = re.compile(r"(^|[;&|]\s*)([A-Za-z_]\w*=\S*\s+)*(hpo|make)(\s|$)")


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line
    argv: tuple[str, ...]  # starts with "hpo" or "make"
    env: tuple[tuple[str, str], ...]
    long: bool
    exit_code: int


def _logical_lines(block: list[tuple[int, str]], console: bool) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in block:
        line = raw.strip()
        if pending is not None:
            line = pending[1] + " " + line
            number = pending[0]
            pending = None
        elif console:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        if line.endswith("\\"):
            pending = (number, line[:-1].rstrip())
            continue
        out.append((number, line))
    return out


def _commands_of(line: str, where: str, long_block: bool) -> list[DocCommand]:
    if not CANDIDATE.search(line):  # prose in a plain block, other tools: not shell we parse
        return []
    comment = re.search(r"(?:^|\s)#\s*(.*)$", line)
    note = comment.group(1).strip() if comment else ""
    tokens = shlex.split(line, comments=True)
    parts: list[list[str]] = [[]]
    for token in tokens:
        if token in SEPARATORS:
            parts.append([])
        else:
            parts[-1].append(token)
    expected = re.match(r"exit (\d+)\b", note)
    found = []
    for part in parts:
        env = []
        while part and ASSIGNMENT.match(part[0]):
            name, _, value = part.pop(0).partition("=")
            env.append((name, value))
        if part and part[0] in ("hpo", "make"):
            found.append(
                DocCommand(
                    where=where,
                    argv=tuple(part),
                    env=tuple(env),
                    long=long_block or note.startswith("long"),
                    exit_code=int(expected.group(1)) if expected else 0,
                )
            )
    return found


def documented_commands(paths: list[Path] = DOCS) -> list[DocCommand]:
    """Every `hpo` and `make` command in the fenced shell blocks of ``paths``, in order."""
    commands: list[DocCommand] = []
    for path in paths:
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            fence, lang = m.group(2), m.group(3).lower()
            long_block = i > 0 and bool(LONG_BLOCK.search(lines[i - 1]))
            j = i + 1
            block = []
            while j < len(lines) and not lines[j].strip().startswith(fence):
                block.append((j + 1, lines[j]))
                j += 1
            if lang in SHELL_LANGS:
                for number, line in _logical_lines(block, console=lang == "console"):
                    where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{number}"
                    commands.extend(_commands_of(line, where, long_block))
            i = j + 1
    return commands


COMMANDS = documented_commands()
HPO = [c for c in COMMANDS if c.argv[0] == "hpo"]
MAKE = [c for c in COMMANDS if c.argv[0] == "make"]


def test_the_docs_have_the_commands_the_readme_promises() -> None:
    """Guards the extraction: were it to find nothing, every other test here would pass vacuously."""
    readme = [c.argv for c in COMMANDS if c.where.startswith("README.md")]
    assert readme[:2] == [("make", "demo"), ("make", "test")], "make demo and make test come first"
    subcommands = {c.argv[1] for c in HPO if len(c.argv) > 1}
    assert {"tune", "trials", "best", "report", "worker"} <= subcommands
    assert any(c.long for c in HPO) and any(not c.long for c in HPO)


def _tiny_config(path: Path) -> None:
    text = CI_CONFIG.read_text()
    assert re.search(r"^study: ci-tiny$", text, re.M)
    path.write_text(
        re.sub(r"^study: ci-tiny$", f"study: {STUDY}", text, flags=re.M) + "max_train_examples: 64\n"
    )


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like the checkout after `make demo`, with the tiny study as runs/demo's criteria-demo."""
    root = tmp_path_factory.mktemp("docs")
    (root / "configs" / "studies").mkdir(parents=True)
    for entry in (REPO / "configs").iterdir():
        if entry.name != "studies":
            (root / "configs" / entry.name).symlink_to(entry.resolve())
    for entry in (REPO / "configs" / "studies").iterdir():
        if entry.name != "demo.yaml":
            (root / "configs" / "studies" / entry.name).symlink_to(entry.resolve())
    (root / "data").symlink_to((REPO / "data").resolve())
    _tiny_config(root / "configs" / "studies" / "demo.yaml")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        res = CliRunner().invoke(
            app,
            ["tune", "--config", "configs/studies/demo.yaml", "--output-dir", "runs/demo", "--n-trials", "2"],
        )
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    return root


def _finished_trials(root: Path) -> int:
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{root / 'runs' / 'demo' / 'hpo.db'}")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=done))


def _substituted(args: list[str], root: Path) -> list[str]:
    if args[:1] == ["tune"] and "--n-trials" in args:
        i = args.index("--n-trials") + 1
        args[i] = str(min(int(args[i]), _finished_trials(root) + 1))
    return args


def _parse_only(args: list[str]) -> None:
    """Click's parsing of a run (options, values, required ones), without invoking anything (typer ships its
    own click: its classes are used by duck typing, and any exception is a failure)."""
    group = get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    i = next((k for k, a in enumerate(args) if a in commands), None)
    assert i is not None, f"no hpo command in {args}"
    with (
        group.make_context("hpo", args[: i + 1]) as ctx,
        commands[args[i]].make_context(args[i], args[i + 1 :], parent=ctx),
    ):
        pass


@pytest.mark.parametrize("cmd", HPO, ids=[f"{c.where} {' '.join(c.argv[:2])}" for c in HPO])
def test_hpo_command_runs_as_documented(
    cmd: DocCommand, checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(checkout)
    args = list(cmd.argv[1:])
    if cmd.long:
        try:
            _parse_only(args)
        except Exception as e:  # a usage error, or whatever else stops the parse
            pytest.fail(f"{cmd.where}: `{shlex.join(cmd.argv)}` does not parse: {type(e).__name__}: {e}")
        return
    res = CliRunner().invoke(app, _substituted(args, checkout), env=dict(cmd.env))
    assert res.exit_code == cmd.exit_code, (
        f"{cmd.where}: `{shlex.join(cmd.argv)}` exited {res.exit_code}, the docs say {cmd.exit_code}:\n"
        f"{res.output}"
    )


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("cmd", MAKE, ids=[f"{c.where} {' '.join(c.argv[:2])}" for c in MAKE])
def test_make_command_exists(cmd: DocCommand) -> None:
    res = subprocess.run(
        ["make", "-n", "-o", ".venv/.install.stamp", *cmd.argv[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **dict(cmd.env)},
    )
    assert res.returncode == cmd.exit_code, f"{cmd.where}: `{shlex.join(cmd.argv)}`:\n{res.stderr}"


def test_extraction_rules(tmp_path: Path) -> None:
    """The rules of the docstring, on a made-up page."""
    page = tmp_path / "page.md"
    page.write_text(
        "text `hpo inline --not-run`\n"
        "```bash\n"
        "source .venv/bin/activate\n"
        "hpo trials --study s && hpo best --study s   # both\n"
        "HF_HUB_OFFLINE=1 hpo tune --config c.yaml \\\n"
        "  --n-trials 9   # long: an hour\n"
        "hpo tune --par 0   # exit 2\n"
        "make demo N_TRIALS=2\n"
        "```\n"
        "```python\nhpo = 1\n```\n"
        "```console\n$ hpo oom --study s\nhpo output line\n```\n"
        "<!-- docs-test: long (needs a server) -->\n"
        "```\nhpo worker --study big\n```\n"
    )
    got = [(c.argv, c.env, c.long, c.exit_code) for c in documented_commands([page])]
    assert got == [
        (("hpo", "trials", "--study", "s"), (), False, 0),
        (("hpo", "best", "--study", "s"), (), False, 0),
        (("hpo", "tune", "--config", "c.yaml", "--n-trials", "9"), (("HF_HUB_OFFLINE", "1"),), True, 0),
        (("hpo", "tune", "--par", "0"), (), False, 2),
        (("make", "demo", "N_TRIALS=2"), (), False, 0),
        (("hpo", "oom", "--study", "s"), (), False, 0),
        (("hpo", "worker", "--study", "big"), (), True, 0),
    ]


def _anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_resolve() -> None:
    """Text moved from the README into docs/: every relative link and #anchor between them still lands."""
    for path in DOCS:
        for target in re.findall(r"\]\(([^)\s]+)\)", path.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            assert dest.exists(), f"{path.name}: link to missing {target}"
            if anchor:
                headings = re.findall(r"^#+ (.*)$", dest.read_text(), re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{path.name}: no heading for {target}"
