"""Run settings: the RunConfig dataclass with every option's default, bounds and help
(`settings`), the value checks shared with the TOML and CLI front ends (`checks`), and loading
from TOML files (`load_config`)."""

from cllora.config.load import load_config
from cllora.config.settings import RunConfig, from_dict

__all__ = ["RunConfig", "from_dict", "load_config"]
