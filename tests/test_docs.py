"""The docs say what is there: every repository file or folder the README, the docs pages and the
results index name exists, every relative link resolves, and every documented command's ``--help``
runs. The README stays short."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from idguide.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "results" / "README.md",
         REPO / "workflows" / "README.md", REPO / "examples" / "README.md"]
TOP = {p.name for p in REPO.iterdir() if not p.name.startswith(".") or p.name == ".ci"} - {".venv"}
FILE_NAME = re.compile(r"^[\w.-]+\.(py|md|json|png|csv|sh|toml|txt|jpg)$")
SKIP = ("<", "*", "…", "...", "{", " ", "=", "|", "$")
CHECKPOINT_FILES = {"config.json"}  # file names of the official checkpoints, not of this repository


def mentions(page: Path) -> list[str]:
    """Backticked paths and link targets of a page."""
    text = page.read_text()
    spans = re.findall(r"`([^`\n]+)`", text)
    links = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not t.startswith(("http", "#", "mailto:"))]
    return spans, links


def repository_path(token: str) -> Path | None:
    """The repository path a backticked token names, or None when it names something else."""
    token = token.strip().rstrip(",.;:")
    if token.startswith(("http", "/", "~", "-")) or any(s in token for s in SKIP):
        return None
    first = token.split("/")[0]
    if "/" in token and first in TOP:
        return REPO / token
    if "/" not in token and first in TOP and ("." in first or (REPO / first).is_file()):
        return REPO / token
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_named_file_and_link_exists(page):
    spans, links = mentions(page)
    index = page.parent not in (REPO, REPO / "docs")  # a folder's README names that folder's files
    missing = []
    for token in spans:
        path = repository_path(token)
        if path is not None and not path.exists():
            missing.append(token)
        elif path is None and FILE_NAME.match(token) and not token.startswith(("_", ".")) and \
                token not in CHECKPOINT_FILES and (token.endswith(".py") or index):
            # a bare module name (the layout lists them by folder), or a file an index lists: it must exist
            if not (page.parent / token).exists() and not any(p for p in REPO.rglob(token) if ".venv" not in p.parts):
                missing.append(token)
    for target in links:
        if not (page.parent / target.split("#")[0]).exists():
            missing.append(f"link {target}")
    assert not missing, f"{page.name} names what is not there: {missing}"


def test_the_checks_above_can_fail(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("See `guidance/nothing_here.py`, `no_such_module.py` and [x](missing.md).")
    spans, links = mentions(page)
    assert repository_path("guidance/nothing_here.py") == REPO / "guidance" / "nothing_here.py"
    assert repository_path("models/idguide/nearid-siglip2/") is None  # a user's path, not ours
    assert links == ["missing.md"] and "no_such_module.py" in spans


def documented_commands() -> tuple[set[tuple[str, ...]], set[str]]:
    """``idguide …`` sub-commands and ``python benchmarks/….py`` / ``python -m …`` scripts of every page."""
    cli, scripts = set(), set()
    for page in PAGES:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("#")[0].strip()
                words = line.split()
                for i, word in enumerate(words):
                    if word == "idguide" and i + 1 < len(words) and not words[i + 1].startswith("-"):
                        sub = words[i + 1: i + 3] if words[i + 1] == "eval" else words[i + 1: i + 2]
                        cli.add(tuple(sub))
                    if word.startswith("benchmarks/") and word.endswith(".py"):
                        scripts.add(word)
                    if word == "-m" and i + 1 < len(words) and words[i + 1].startswith("idguide_proving"):
                        scripts.add(words[i + 1])
    return cli, scripts


def test_every_documented_idguide_command_has_help(capsys):
    cli, _ = documented_commands()
    assert {("rank",), ("eval", "dreambench")} <= cli
    for command in sorted(cli):
        with pytest.raises(SystemExit) as exit:
            main([*command, "--help"])
        assert exit.value.code == 0, command
        assert "usage: idguide" in capsys.readouterr().out


def test_every_documented_script_has_help():
    _, scripts = documented_commands()
    assert "benchmarks/steering_bench.py" in scripts
    for script in sorted(scripts):
        command = [sys.executable, script, "--help"] if script.endswith(".py") else [sys.executable, "-m", script,
                                                                                      "--help"]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0 and "usage" in result.stdout, f"{script}: {result.stderr[-2000:]}"


def test_the_readme_is_short_and_opens_with_the_two_commands():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150
    assert lines[0] == "# IDGuide" and lines[3].startswith("# 1. set up") and lines[6].startswith("# 2. run the tests")
