"""Atomic file writes and tolerant reads: CSV, JSON, npz, matplotlib figures; and the one check of
an output location (`check_output_dir`, `check_output_file`, `check_figure_format`) every command
makes before any work, so a location that cannot be written is one sentence, not a traceback later.

Every write goes to a temporary file that is then renamed over the target, so a process killed at
any moment never leaves a half-written file; the readers return None (JSON, npz) for a file that is
missing or damaged. `cllora.records` builds the run directory on these.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")  # characters a file name never gets


SLUG_CHARS = 120  # longer names keep their start and a hash of the whole (file systems cap at 255 bytes)


def slug(text: str, fallback: str = "run") -> str:
    """A safe file or directory name: runs of other characters become "_"; never empty; at most
    SLUG_CHARS characters (a longer one is cut and ends in a hash of the whole, so names stay distinct)."""
    name = UNSAFE.sub("_", str(text)).strip("._") or fallback
    if len(name) <= SLUG_CHARS:
        return name
    return name[:SLUG_CHARS - 11].rstrip("._") + "_" + hashlib.sha1(name.encode()).hexdigest()[:10]

from cllora.errors import UserError


def _existing_ancestor(path: Path, flag: str) -> Path:
    """The nearest part of `path` (itself included) that exists; a UserError where that part is a
    file (the location would lie below a file)."""
    here = path
    while not here.exists() and here.parent != here:
        here = here.parent
    if here != path and not here.is_dir():
        raise UserError(f"{flag} {str(path)!r} lies below {str(here)!r}, which is a file, not a folder; "
                        "name a location in a folder")
    return here


def _probe_writable(folder: Path, path: Path, flag: str) -> None:
    """Create and remove a temporary file in `folder` (root ignores permission bits, so a real write
    is the only honest test); a UserError with the system's reason where it fails."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".cllora-write-check-")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UserError(f"{flag} {str(path)!r} cannot be written: creating a file in {str(folder)!r} "
                        f"failed ({exc.strerror or exc}); choose a writable location") from None


def check_output_dir(path: str | Path, flag: str) -> Path:
    """Before any work: `path` is a folder, or can be created as one, and files can be written in it
    (no side effect: nothing is created). A UserError naming `flag` and the reason otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a file, not a folder; name a folder (created if missing)")
    _probe_writable(_existing_ancestor(path, flag), path, flag)
    return path


def check_output_file(path: str | Path, flag: str) -> Path:
    """Before any work: the file `path` can be written (its folder exists or can be created and is
    writable; `path` is not a folder). A UserError naming `flag` and the reason otherwise."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {str(path)!r} is a folder; name a file")
    if str(path).endswith(("/", os.sep)):
        raise UserError(f"{flag} {str(path)!r} names a folder; name a file")
    folder = path.parent if path.exists() else _existing_ancestor(path, flag)
    _probe_writable(folder, path, flag)
    return path


def check_figure_format(path: str | Path, flag: str) -> None:
    """The figure `path` ends in a format matplotlib can write (its own list, asked up front)."""
    from matplotlib.backend_bases import FigureCanvasBase  # lazy: figures are optional work

    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in formats:
        shown = f"format {suffix!r}" if suffix else "no format suffix"
        raise UserError(f"{flag} {str(path)!r} has {shown}; end the name in one of "
                        f"{', '.join('.' + f for f in formats)}")


def write_npz(path: Path, arrays: dict[str, Any]) -> None:
    """Arrays (and scalars) into a compressed .npz, atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    atomic_write_bytes(path, buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of an .npz file, or None when it is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # a damaged .npz is a zip cut short
        return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_figure(fig, path: Path, *more: Path, dpi: int = 110) -> None:
    """Save a matplotlib figure atomically (temporary file, then rename) to `path` and to each of
    `more` (other formats, picked by suffix; an SVG carries no date, so it is reproducible), then close it."""
    import matplotlib.pyplot as plt

    try:
        for target in (path, *more):
            tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp{target.suffix}")
            fig.savefig(tmp, dpi=dpi, metadata={"Date": None} if target.suffix == ".svg" else None)
            os.replace(tmp, target)
    finally:
        plt.close(fig)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # shortest round-trip form: identical runs give identical bytes
    return "" if value is None else str(value)


def write_csv(path: Path, columns: Iterable[str], rows: list[dict]) -> None:
    columns = list(columns)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_fmt(row.get(c)) for c in columns])
    atomic_write_text(path, buf.getvalue())


def read_csv(path: Path, log: Callable[[str], None] | None = None) -> list[dict]:
    """Rows of a run CSV with numbers parsed (empty cells become None, text stays text).

    Tolerant of a file cut mid-line (copied, or written by another tool, while it grew; cllora's
    own writes are atomic): a last line without its newline is left out and said through `log`
    (default: a note on stderr). A row of the wrong length before the last is damage, not a cut:
    a UserError naming the file and line."""
    def parse(v: str):
        if v == "":
            return None
        for cast in (int, float):
            try:
                return cast(v)
            except ValueError:
                pass
        return v

    with open(path, newline="") as fh:
        text = fh.read()
    records = list(csv.reader(io.StringIO(text)))
    if text and not text.endswith("\n"):
        records.pop()
        (log or _note)(f"{path}: its last line is cut short (no newline at the end); read without it")
    if not records:
        return []
    header, rows = records[0], records[1:]
    for number, row in enumerate(rows, start=2):
        if row and len(row) != len(header):
            raise UserError(f"{path}: line {number} has {len(row)} fields, not {len(header)}; the file "
                            "is damaged")
    return [{k: parse(v) for k, v in zip(header, row)} for row in rows if row]


def _note(message: str) -> None:
    print(f"cllora: note: {message}", file=sys.stderr)


def read_json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (a run still being written)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
