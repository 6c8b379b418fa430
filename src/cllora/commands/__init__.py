"""Subcommands of the `cllora` CLI, one module each."""
