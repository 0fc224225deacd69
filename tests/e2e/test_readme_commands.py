"""Every command README.md, docs/ and examples/README.md show, run as written against a real
server.

What the pages show is what a reader types, so it is run, and what they print is compared:

- A ```bash block whose lines start with ``$ `` holds commands (``\\`` continues a line) each
  followed by the output it prints. A ```bash block without ``$`` is a list of commands, and a
  ```text block that follows it before any other code block is what they print together. A
  ```python block directly followed by a ```text block runs, and prints that.
- In printed output, ``~`` before a number marks it as varying from run to run: any number
  matches there. Everything else must match exactly.
- A block without ``$`` runs in one shell, as a reader pastes it (a server started with `` &``
  included; the shell's process group is killed afterwards). ``make TARGET`` runs as ``make -n``
  (``make test`` is this very suite; the test server stands in for ``make serve``).
- ``<!-- readme-commands: skip ... -->`` up to ``<!-- readme-commands: run -->`` is not run
  (Docker and cluster commands).

The commands run in a scratch folder that links to the repository's top-level entries, so that
the files they write land there; ``.venv/`` stands for the environment running the tests, and
the port 50051 for a free one (the live server's, unless the block starts its own).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from probes import free_port

REPO = Path(__file__).resolve().parents[2]
PAGES = ["README.md", *sorted(f"docs/{page.name}" for page in (REPO / "docs").glob("*.md")),
         "examples/README.md"]
_FENCE = re.compile(r"^```(\w*)\s*$")
_VARIES = re.compile(r"~\d[\d,.]*")


@dataclass
class Block:
    language: str
    lines: list[str]
    line: int  # where it starts in its page, for messages
    output: list[str] | None = None  # the ```text block that shows what it prints


@dataclass
class Command:
    text: str
    expected: list[str] | None = None
    background: bool = False
    port: int | None = None


def read_blocks(text: str) -> list[Block]:
    """The page's code blocks outside skipped regions, each with its output block attached."""
    blocks: list[Block] = []
    current: Block | None = None
    skipping = False
    for number, line in enumerate(text.splitlines(), 1):
        if current is None:
            if line.startswith("<!-- readme-commands: skip"):
                skipping = True
            elif line.startswith("<!-- readme-commands: run"):
                skipping = False
            match = _FENCE.match(line)
            if match and not skipping:
                current = Block(match.group(1), [], number)
            elif match:
                current = Block("skipped", [], number)
        elif line.startswith("```"):
            if current.language == "text" and blocks and blocks[-1].output is None \
                    and blocks[-1].language in ("bash", "python"):
                blocks[-1].output = current.lines
            elif current.language != "skipped":
                blocks.append(current)
            current = None
        else:
            current.lines.append(line)
    return blocks


def commands(block: Block) -> list[Command]:
    """The block's commands, each with the output it prints when the block shows it inline."""
    found: list[Command] = []
    inline = any(line.startswith("$ ") for line in block.lines)
    pending = ""
    for line in block.lines:
        if inline and not line.startswith("$ ") and not pending:
            found[-1].expected = (found[-1].expected or []) + [line]
            continue
        text = line[2:] if inline and not pending else line
        if text.rstrip().endswith("\\"):
            pending += text.rstrip()[:-1] + " "
            continue
        text, pending = (pending + text).strip(), ""
        text_without_comment = re.sub(r"\s+#.*$", "", text)
        if text_without_comment:
            background = text_without_comment.endswith("&")
            command = Command(text_without_comment.rstrip("&").strip(), [] if inline else None,
                              background)
            found.append(command)
    return found


def matches(expected: list[str], printed: str) -> bool:
    lines = [line.rstrip() for line in printed.strip("\n").splitlines()]
    if len(lines) != len(expected):
        return False
    for want, got in zip(expected, lines):
        pattern = "".join(r"\d[\d,.]*" if _VARIES.fullmatch(part) else re.escape(part)
                          for part in re.split(r"(~\d[\d,.]*)", want.rstrip()))
        if not re.fullmatch(pattern, got):
            return False
    return True


def _scratch(tmp_path: Path) -> Path:
    for entry in REPO.iterdir():
        if entry.name not in (".git",):
            (tmp_path / entry.name).symlink_to(entry)
    return tmp_path


def _substitute(text: str, port: int) -> str:
    return text.replace(".venv/", f"{sys.prefix}/").replace("50051", str(port))


def _bash(script: str, cwd: Path, env: dict, where: str) -> str:
    """Runs ``script`` with ``bash -e`` in its own process group, which is killed afterwards so
    that a background server the script failed to stop cannot outlive it."""
    process = subprocess.Popen(["bash", "-ec", script], cwd=cwd, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               start_new_session=True)
    try:
        out, err = process.communicate(timeout=240)
    finally:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    assert process.returncode == 0, f"{where}: exited {process.returncode}:\n{script}\n" \
                                    f"{out[-2000:]}\n{err[-3000:]}"
    return out


def run_block(block: Block, page: str, cwd: Path, target: str) -> None:
    """Runs the block in the scratch folder ``cwd`` and compares what it prints."""
    listed = commands(block)
    port = free_port() if any(c.background for c in listed) else int(target.rsplit(":", 1)[1])
    env = {**os.environ, "HEATMAP_TARGET": f"127.0.0.1:{port}"}
    where = f"{page}:{block.line}"
    if block.language == "python":
        source = _substitute("\n".join(block.lines), port)
        done = subprocess.run([sys.executable, "-c", source], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{where}: {done.stderr[-3000:]}"
        printed = done.stdout
    elif any(c.expected is not None for c in listed):
        printed = ""
        for command in listed:  # one shell each: their outputs are shown one by one
            out = _bash(_substitute(command.text, port), cwd, env, where)
            assert matches(command.expected, out), \
                f"{where}: `{command.text}` printed\n{out}\nnot\n" + "\n".join(command.expected)
            printed += out
    else:
        lines = []
        for command in listed:  # one shell for the block, as a reader pastes it
            text = _substitute(command.text, port)
            text = "make -n " + text[len("make "):] if text.startswith("make ") else text
            lines.append(text + (" &" if command.background else ""))
        printed = _bash("\n".join(lines), cwd, env, where)
    if block.output is not None:
        printed = printed.replace(f"127.0.0.1:{port}", "127.0.0.1:50051")  # as the page shows it
        assert matches(block.output, printed), \
            f"{where}: printed\n{printed}\nnot\n" + "\n".join(block.output)


def _cases() -> list:
    cases = []
    for page in PAGES:
        for block in read_blocks((REPO / page).read_text()):
            if block.language == "bash" or (block.language == "python" and block.output):
                cases.append(pytest.param(page, block, id=f"{page}:{block.line}"))
    return cases


@pytest.mark.timeout(300)
@pytest.mark.parametrize("page, block", _cases())
def test_readme_block_runs_as_written(page, block, live_server, tmp_path):
    if not (Path(sys.prefix) / "bin" / "activate").exists():
        pytest.skip("the tests' Python is not a venv: the pages' .venv/ commands do not apply")
    run_block(block, page, _scratch(tmp_path), live_server.target)


def test_the_pages_have_commands_to_run():
    # A page whose fences stopped parsing would otherwise pass by running nothing.
    for page in ("README.md", "examples/README.md"):
        assert any(block.language == "bash"
                   for block in read_blocks((REPO / page).read_text())), page


def test_varying_numbers_match_any_number_and_nothing_else():
    assert matches(["server ~9228 us"], "server 17 us\n")
    assert not matches(["server ~9228 us"], "server us\n")
    assert not matches(["824 bytes"], "828 bytes\n")
    assert not matches(["one", "two"], "one\n")
