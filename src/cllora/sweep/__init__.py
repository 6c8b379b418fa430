"""Grids of runs: the grid spec and cells (`grid`), the sequential sweep (`run`), the Ray sweep
(`on_ray`, `worker`), the index of cells (`index`), cost estimates (`estimate`) and the dry-run
view (`view`)."""
