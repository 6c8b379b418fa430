"""Settings named for a reader (pure): each setting of a report gets a short name, its sweep (or
preset) and only the keys that set it apart from the other settings there, e.g. "study-quantity ·
10 clients, 2 a round · 6 rounds × 1 epoch"; the full key list lives once, in the settings matrix
(settings × the keys that differ between them) and in the runs table.

A key is named for a setting when its value differs from the report's most common value of that
key, or when it varies between the settings of the same sweep (so "study-strategies · fedadam"
sits beside "study-strategies · fedavg"); related keys read as one phrase (`PHRASES`). Names that
would still coincide get the keys that tell them apart, as `key=value`. Short names (the forest
plot's row labels, where width is scarce) keep only the keys that vary within the sweep: a sweep's
folder already tells it from the others.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Any, Callable

from cllora.analysis.conditions import CONDITION_KEYS, model_label, present, setting_key
from cllora.analysis.stats import short

SEP = " · "
# keys that decide nothing a reader compares (how often fairness is scored): named only where
# nothing else tells two settings apart
QUIET_KEYS = ("fairness_every",)


def _num(v: Any) -> str:
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return short(v)


def _plural(n: Any, word: str) -> str:
    return f"{_num(n)} {word}" + ("" if n == 1 else "s")


def _clients(c: dict) -> str:
    return f"{_plural(c.get('clients'), 'client')}, {_num(c.get('clients_per_round'))} a round"


def _rounds(c: dict) -> str:
    return f"{_plural(c.get('rounds'), 'round')} × {_plural(c.get('local_epochs'), 'epoch')}"


def _data(c: dict, named: list[str]) -> str:
    """Only the data keys that are named: the corpus, its cut, its subsample."""
    parts = [str(c.get("dataset"))] if "dataset" in named else []
    if "max_length" in named:
        parts.append(f"{_num(c.get('max_length'))} tokens")
    if "max_train_examples" in named:
        parts.append(f"{_num(c.get('max_train_examples'))} train texts")
    return ", ".join(parts)


def _natural(c: dict) -> str:
    if not c.get("client_key"):
        return f"{_num(c['client_size'])} texts a client" if c.get("client_size") else ""
    return f"by {c['client_key']}"  # "8 clients, 2 a round · by president"; their size is in the matrix


def _privacy(c: dict) -> str:
    if c.get("dp_clip") is None:
        return "no DP"
    eps = c.get("dp_target_epsilon")
    return (f"DP ε = {_num(eps)}" if eps is not None else "DP") + f", clip {_num(c['dp_clip'])}"


# (keys, phrase(config, named keys)): keys named together, in this order
PHRASES: tuple[tuple[tuple[str, ...], Callable[[dict, list[str]], str]], ...] = (
    (("model",), lambda c, _: model_label(c.get("model", ""))),
    (("dataset", "max_length", "max_train_examples"), _data),
    (("clients", "clients_per_round"), lambda c, _: _clients(c)),
    (("client_key", "client_size"), lambda c, _: _natural(c)),
    (("rounds", "local_epochs"), lambda c, _: _rounds(c)),
    (("strategy",), lambda c, _: str(c.get("strategy"))),
    (("dp_clip", "dp_target_epsilon", "dp_delta"), lambda c, _: _privacy(c)),
    (("replicate",), lambda c, _: f"replicate {_num(c.get('replicate'))}"),
    (("precision",), lambda c, _: f"{c.get('precision')} precision"),
)


def _value(config: dict, key: str) -> str:
    return json.dumps(config.get(key), sort_keys=True, default=str)


def differing_keys(configs: dict[str, dict]) -> list[str]:
    """The keys (scheme, alpha and seed aside) whose values differ between these settings, in the
    order they first appear."""
    keys = dict.fromkeys(k for c in configs.values() for k in c if k not in CONDITION_KEYS)
    return [k for k in keys if len({_value(c, k) for c in configs.values()}) > 1]


def _named_keys(configs: dict[str, dict], sweeps: dict[str, str], short: bool = False) -> dict[str, list[str]]:
    """Per setting, the keys that set it apart: off the report's most common value (unless
    `short`), or varying within its sweep."""
    varying = differing_keys(configs)
    common = {k: Counter(_value(c, k) for c in configs.values()).most_common(1)[0][0] for k in varying}
    out = {}
    for setting, config in configs.items():
        mates = {s: c for s, c in configs.items() if sweeps.get(s) == sweeps.get(setting)}
        inside = set(differing_keys(mates))
        out[setting] = [k for k in varying if k not in QUIET_KEYS
                        and (k in inside or not short and _value(config, k) != common[k])]
    return out


def _compose(sweep: str, config: dict, keys: list[str], extra: list[str]) -> str:
    parts = [sweep] if sweep else []
    for group, phrase in PHRASES:
        unset = all(config.get(k) is None for k in group) and "dp_clip" not in group  # no DP says "no DP"
        if any(k in keys for k in group) and not unset:
            parts.append(phrase(config, keys))
    grouped = {k for group, _ in PHRASES for k in group}
    parts += [f"{k}={short(config.get(k))}" for k in keys + extra if k not in grouped]
    return SEP.join(p for p in parts if p) or model_label(config.get("model", "")) or "all runs"


def setting_names(configs: dict[str, dict], sweeps: dict[str, str] | None = None,
                  short: bool = False) -> dict[str, str]:
    """{setting: name}: its sweep (`sweeps[setting]`, may be empty) and the phrases of the keys
    that set it apart (`short`: only those that vary within its sweep); settings whose names
    coincide also get the keys that differ between them."""
    sweeps = sweeps or {}
    keys = _named_keys(configs, sweeps, short)
    names = {s: _compose(sweeps.get(s, ""), c, keys[s], []) for s, c in configs.items()}
    for name in [n for n, count in Counter(names.values()).items() if count > 1]:
        same = {s: configs[s] for s, n in names.items() if n == name}
        apart = differing_keys(same)
        for s, config in same.items():
            names[s] = _compose(sweeps.get(s, ""), config, keys[s], [k for k in apart if k not in keys[s]])
    return names


def settings_matrix(configs: dict[str, dict], names: dict[str, str]) -> tuple[list[str], list[list[str]], dict]:
    """The settings matrix: (the keys that differ between settings, one row per setting of its
    name and its value of each, {key: value} of the keys every setting shares)."""
    keys = differing_keys(configs)
    rows = [[names[s], *(short(c.get(k)) for k in keys)] for s, c in configs.items()]
    first = next(iter(configs.values()), {})
    shared = {k: short(v) for k, v in first.items() if k not in CONDITION_KEYS and k not in keys}
    return keys, rows, shared


def rename(text: str, labels: dict[str, str], names: dict[str, str]) -> str:
    """`text` (an evidence line, a comparison's label) with every setting label
    (conditions.setting_labels) replaced by that setting's name, longest label first."""
    by_label = {label: names[s] for s, label in labels.items() if label and s in names}
    if not by_label:
        return text
    pattern = "|".join(re.escape(label) for label in sorted(by_label, key=len, reverse=True))
    return re.sub(pattern, lambda m: by_label[m.group(0)], text)  # one pass: a name is never renamed


def run_settings(runs: list) -> tuple[dict[str, dict], dict[str, str]]:
    """({setting: config}, {setting: sweep}) of some runs (analysis.runs.RunRecord): a setting seen
    in several sweeps (more seeds published in a second folder) takes the shortest sweep name."""
    configs: dict[str, dict] = {}
    sweeps: dict[str, set[str]] = {}
    for rec in runs:
        key = setting_key(rec.config)
        configs.setdefault(key, present(rec.config))
        sweeps.setdefault(key, set()).add(sweep_label(rec))
    return configs, {k: shortest(v) for k, v in sweeps.items()}


def sweep_label(run) -> str:
    """The sweep a run is named by (run.sweep, an analysis.plans.Sweep or None): its folder below
    the report root (a published sweep's folder, e.g. study-quantity), or, when the report root
    is the sweep itself, the sweep's recorded name (the root's folder name may be any path);
    "" outside a sweep."""
    sweep = getattr(run, "sweep", None)
    if not sweep:
        return ""
    return sweep.folder if run.name.startswith(sweep.folder + "/") else sweep.name


def shortest(sweeps: set[str]) -> str:
    """The name of a setting seen in several sweeps: the shortest (study-null before
    study-null-seeds34, a folder of more seeds of it)."""
    return min(sweeps, key=lambda s: (len(s), s)) if sweeps else ""

