"""The command outputs shown in README.md and docs/: each block marked `<!-- output: ID -->` (the
fenced block right after the marker) is what `cllora ...` prints, run here through cllora.cli.main
at a fixed width. `python scripts/doc_outputs.py` rewrites the blocks; `--check` (and
tests/test_doc_outputs.py) fails on a block that differs from what the program prints now, so a
shown output cannot go stale.

A block shows the whole output, or the lines holding any of `keep` with "  ..." where lines were
left out. Outputs that take minutes (a training run) are not shown as blocks; the docs describe them.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", ROOT / "docs" / "guide.md")
WIDTH = "100"  # rich tables and argparse wrap at the terminal's width: fixed here

# ID → (the command's arguments, the lines kept: None = all)
OUTPUTS: dict[str, tuple[list[str], tuple[str, ...] | None]] = {
    "help": (["--help"], None),
    "params": (["params", "facebook/opt-125m", "facebook/opt-350m", "facebook/opt-1.3b", "smollm2-135m",
                "--rank", "2"], None),
    "partition-summary": (["partition", "--scheme", "length", "--alpha", "0.1", "--clients", "10"],
                          ("mean dominant-class share", "mean / max total-variation", "Gini of client sizes")),
    "partition": (["partition", "--scheme", "length", "--alpha", "0.1", "--clients", "10"], None),
}
MARKER = re.compile(r"<!-- output: (?P<id>[\w-]+) -->\n```\n(?P<body>.*?)```\n", re.S)


def printed(args: list[str]) -> str:
    """What `cllora ARGS` prints (stdout and stderr) at the fixed width."""
    from cllora.cli import main  # lazy: the checker's import is cheap until it runs a command

    os.environ["COLUMNS"] = WIDTH
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        try:
            code = main(args)
        except SystemExit as exc:  # --help exits
            code = exc.code
    if code not in (0, None):
        raise RuntimeError(f"cllora {' '.join(args)} exited with {code}:\n{buffer.getvalue()}")
    # the one-time GGUF conversion's line (a fresh machine's first command) is not the command's output
    return re.sub(r"(?m)^converting \S+ from GGUF once.*\n", "", buffer.getvalue())


def block(output_id: str, cache: dict[str, str]) -> str:
    """The fenced block's text for one ID: the command line, then its (kept) output lines."""
    args, keep = OUTPUTS[output_id]
    key = " ".join(args)
    if key not in cache:
        cache[key] = printed(args)
    lines = [line.rstrip() for line in cache[key].strip("\n").splitlines()]
    if keep is not None:
        shown: list[str] = []
        for line in lines:
            if any(k in line for k in keep):
                shown.append(line)
            elif not shown or shown[-1] != "  ...":
                shown.append("  ...")
        lines = shown[:-1] if shown and shown[-1] == "  ..." else shown
    return "\n".join([f"$ cllora {key}", *lines]) + "\n"


def stale(pages=PAGES, write: bool = False) -> list[str]:
    """The blocks (page: ID) whose text differs from the program's output; with `write`, rewritten."""
    cache: dict[str, str] = {}
    found = []
    for page in pages:
        text = page.read_text()

        def fresh(match: re.Match) -> str:
            body = block(match["id"], cache)
            if body != match["body"]:
                found.append(f"{page.relative_to(ROOT) if page.is_relative_to(ROOT) else page}: {match['id']}")
            return f"<!-- output: {match['id']} -->\n```\n{body}```\n"

        new = MARKER.sub(fresh, text)
        if write and new != text:
            page.write_text(new)
    return found


def marked(pages=PAGES) -> list[str]:
    """Every marked block's ID, page by page."""
    return [m["id"] for page in pages for m in MARKER.finditer(page.read_text())]


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    differing = stale(write="--check" not in sys.argv)
    print("\n".join(differing) or "every shown output is the program's")
    sys.exit(1 if differing and "--check" in sys.argv else 0)
