"""MkDocs hook: the repository-root Markdown files included into docs/ render as on GitHub.

FINDINGS.md and BENCHMARKS.md live at the repository root and are included into docs/findings.md
and docs/benchmarks.md by pymdownx.snippets. They are written for GitHub, which differs from
Python-Markdown (what mkdocs uses) in two ways that matter here:

1. Links are relative to the root: `docs/findings-report.html` or `results/` point nowhere once
   the text sits under docs/. A link whose target is not a file of docs/ but is a repository path
   is rewritten: README.md, FINDINGS.md, BENCHMARKS.md -> index.md, findings.md, benchmarks.md
   (README's anchors are dropped, its sections moved to other pages); docs/X -> X, a file of the
   site, which mkdocs then checks like any other link; any other existing repository path
   (results/, benchmarks/..., tests/...) -> its text, unlinked, since the site holds only docs/.
   Every other target is left as written, so `mkdocs build --strict` still fails on a broken link.
2. Lists: GitHub starts a list right after a paragraph line and nests items indented by 2 spaces;
   Python-Markdown needs a blank line before the list and 4 spaces. A blank line is inserted
   before a list that follows a paragraph, and a list item indented by 1-3 spaces inside a list
   is indented by 4.

The rewriting is a Markdown preprocessor that runs right after snippets (priority 31, snippets is
32), on every page; pages written for docs/ already follow both rules and pass unchanged.
Fenced code blocks are not touched.
"""

from __future__ import annotations

import re
from pathlib import Path

from markdown import Extension, Markdown
from markdown.preprocessors import Preprocessor

ROOT_PAGES = {"README.md": "index.md", "FINDINGS.md": "findings.md", "BENCHMARKS.md": "benchmarks.md"}
LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\]]*\])*)\]\(([^()\s]+)\)")
FENCE = re.compile(r"^\s*(```|~~~)")
ITEM = re.compile(r"^( *)([-*+]|\d+\.) ")
NOT_A_PATH = re.compile(r"([a-z][a-z0-9+.-]*:|#|/)", re.IGNORECASE)  # a URL, an anchor, an absolute path


class _RootFiles(Preprocessor):
    def __init__(self, md: Markdown, root: Path, docs: Path) -> None:
        super().__init__(md)
        self.root, self.docs = root, docs

    def run(self, lines: list[str]) -> list[str]:
        out: list[str] = []
        fenced = in_list = False
        for line in lines:
            if FENCE.match(line):
                fenced = not fenced
            if fenced or FENCE.match(line):
                out.append(line)
                continue
            item = ITEM.match(line)
            if not line.strip():
                in_list = False
            elif item and not in_list:
                in_list = True
                if out and out[-1].strip() and not item.group(1):
                    out.append("")  # a list right after a paragraph line
            elif item and 0 < len(item.group(1)) < 4:
                line = "    " + line.lstrip(" ")  # a nested item indented GitHub's way
            out.append(LINK.sub(self._rewrite, line))
        return out

    def _rewrite(self, match: re.Match) -> str:
        bang, text, target = match.groups()
        path, _, anchor = target.partition("#")
        if NOT_A_PATH.match(target) or (self.docs / path).exists():
            return match.group(0)
        if path in ROOT_PAGES:
            page = ROOT_PAGES[path] + (f"#{anchor}" if anchor and path != "README.md" else "")
            return f"{bang}[{text}]({page})"
        if path.startswith("docs/"):
            return f"{bang}[{text}]({target.removeprefix('docs/')})"
        if (self.root / path).exists():
            return text
        return match.group(0)


class _RootFilesExtension(Extension):
    def __init__(self, root: Path, docs: Path) -> None:
        super().__init__()
        self.root, self.docs = root, docs

    def extendMarkdown(self, md: Markdown) -> None:  # noqa: N802 (Markdown's name)
        md.preprocessors.register(_RootFiles(md, self.root, self.docs), "cllora_root_files", 31)


def on_config(config):
    """Add the preprocessor to every page's Markdown (mkdocs passes this list to Markdown as is)."""
    root = Path(config.config_file_path).parent
    config.markdown_extensions.append(_RootFilesExtension(root, Path(config.docs_dir)))
    return config
