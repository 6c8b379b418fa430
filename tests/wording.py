"""Error messages read by their config keys: since issue 32 the CLI names a setting as the user gave
it (`--client-key` for a flag, `seed (in exp.toml)` for a key of a config file), which
tests/test_cli_messages.py checks; tests about *what* is refused compare the sentence by keys."""

from __future__ import annotations

import re


def as_keys(err: str) -> str:
    """`err` with flags written as keys (`--client-key` -> `client_key`) and file notes removed."""
    err = re.sub(r" \(in [^)]*\.toml\)", "", err)
    return re.sub(r"--([a-z][a-z0-9-]*)", lambda m: m.group(1).replace("-", "_"), err)
