"""DreamBench++ metric-vs-human alignment, and the ID-Sim paper's DreamBench protocol.

Rating files are JSON objects ``image key → score``; keys are ``<category>_<NN>_<subject>-<i>``
(``object_52_teapot-3``). Files are paired **by key, checked**: a metric file may add a trailing
``_<n>`` to every key and may call a subject by another name (same category and index); both are
reconciled explicitly and the renames reported. Any other difference is an error naming the
first key that diverges.

- DreamBench++ / NearID: per method, Pearson of the metric with each annotator group, each
  rounded to 4 decimals, averaged; Human-Human = Pearson(group 1, group 2); across the methods,
  the Fisher-z mean.
- ID-Sim: Spearman (main) and Kendall tau-b of the metric against the mean of the two groups,
  pooled over every method's images of the animal and object subjects (45 + 65 = 110).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from . import stats

CATEGORIES = ("object", "live_subject_animal", "live_subject_human", "style")
IDSIM_CATEGORIES = ("live_subject_animal", "object")
METHODS = ("textual_inversion_sd", "dreambooth_sd", "dreambooth_lora_sdxl", "blip_diffusion", "emu2",
           "ip_adapter_plus_vit_h_sdxl", "ip_adapter_vit_g_sdxl")
KEY = re.compile(r"^(?P<category>" + "|".join(CATEGORIES) + r")_(?P<index>\d+)_(?P<subject>.+)-(?P<image>\d+)(?:_\d+)?$")


class Ratings(dict):
    """key → score, and the file it was read from (``path``; ``None`` when built in code), so an
    error about the values can name the file."""

    path: Path | None = None

    @classmethod
    def read(cls, data: dict, path: Path | None) -> "Ratings":
        ratings = cls(data)
        ratings.path = path
        return ratings


def rating_source(ratings: Mapping[str, float], name: str) -> str:
    """How an error names a rating file: its path when known."""
    path = getattr(ratings, "path", None)
    return f"{name} ({path})" if path else name


@dataclass(frozen=True)
class Key:
    category: str
    index: int
    subject: str
    image: int

    @property
    def slot(self) -> tuple[str, int, int]:
        """What two files must agree on: category, subject index, image index."""
        return self.category, self.index, self.image


def parse_key(key: str, source: str) -> Key:
    match = KEY.match(key)
    if not match:
        raise ValueError(f"{source}: key {key!r} is not <category>_<NN>_<subject>-<i> "
                         f"(categories: {', '.join(CATEGORIES)})")
    return Key(match["category"], int(match["index"]), match["subject"], int(match["image"]))


def read_ratings(path: Path, allow_missing: bool = False) -> Ratings:
    """One rating file: a JSON object of key → finite number. ``allow_missing`` (metric files):
    ``null`` or NaN marks an image the metric could not score (kept as NaN, dropped later)."""
    try:
        data = json.loads(Path(path).read_text(), object_pairs_hook=lambda pairs: unique_keys(pairs, path))
    except FileNotFoundError:
        raise ValueError(f"rating file not found: {path}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read rating file {path}: {error}") from None
    except RecursionError:
        raise ValueError(f"cannot read rating file {path}: nested too deeply") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a non-empty JSON object of image key → score")
    for key, value in data.items():
        if allow_missing and (value is None or (isinstance(value, float) and math.isnan(value))):
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{path}: the score of {key!r} is {value!r}, not a finite number")
    return Ratings.read({k: math.nan if v is None else float(v) for k, v in data.items()}, Path(path))


def unique_keys(pairs: list[tuple], path) -> dict:
    """A JSON object, refusing a key given twice (``json`` would silently keep the last value)."""
    data = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"{path}: the key {key!r} appears twice (scores {data[key]!r} and {value!r})")
        data[key] = value
    return data


PROVENANCE = ".provenance.json"  # what produced a rating file sits beside it (evaluation.scoring)


def read_folder(folder: Path, suffix: str = "", allow_missing: bool = False) -> dict[str, Ratings]:
    """Every ``<method><suffix>.json`` of a folder, by method name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"not a folder of rating files: {folder}")
    files = sorted(f for f in folder.glob(f"*{suffix}.json") if not f.name.endswith(PROVENANCE))
    if not files:
        raise ValueError(f"{folder} holds no *{suffix}.json rating files")
    return {f.name[: -len(f"{suffix}.json")]: read_ratings(f, allow_missing) for f in files}


def find_groups(root: Path) -> tuple[Path, Path]:
    """The two annotator-group folders under a DreamBench++ ratings folder (any depth)."""
    root = Path(root)
    if not root.exists():
        raise ValueError(f"the human ratings folder {root} does not exist")
    if not root.is_dir():
        raise ValueError(f"the human ratings folder {root} is a file; give the folder that holds group1/ and group2/")
    pairs = [g.parent for g in sorted(root.rglob("group1")) if g.is_dir() and (g.parent / "group2").is_dir()]
    if not pairs:
        raise ValueError(f"no group1/ and group2/ folders of human ratings under {root} "
                         "(expected data_human_rating/merged_data/group1|group2/<method>-cp.json)")
    if len(pairs) > 1:
        raise ValueError(f"{root} holds {len(pairs)} sets of group1/ and group2/ ratings ({pairs[0]} and {pairs[1]}"
                         f"{', ...' if len(pairs) > 2 else ''}); give the folder of the one to use")
    return pairs[0] / "group1", pairs[0] / "group2"


@dataclass
class Aligned:
    """Values of several sources on the same images, in one order."""

    keys: list[Key]
    values: dict[str, list[float]]
    renamed: dict[str, set[tuple[str, str]]] = field(default_factory=dict)  # source → {(ours, theirs)}

    def subset(self, categories: Iterable[str]) -> "Aligned":
        wanted = set(categories)
        index = [i for i, k in enumerate(self.keys) if k.category in wanted]
        return Aligned([self.keys[i] for i in index], {s: [v[i] for i in index] for s, v in self.values.items()},
                       self.renamed)


def align(sources: Mapping[str, Ratings], method: str = "") -> Aligned:
    """Pair several rating files of one method by key (the first source's names are kept)."""
    try:
        return _align(sources)
    except ValueError as error:
        raise ValueError(f"{method}: {error}" if method else str(error)) from None


def by_slot(ratings: Ratings, name: str) -> dict[tuple[str, int, int], tuple[Key, float]]:
    """One file's values by (category, subject index, image index); two keys for one slot are an error."""
    slots = {}
    for key, value in ratings.items():
        parsed = parse_key(key, name)
        if parsed.slot in slots:
            raise ValueError(f"{name}: two keys for {parsed.slot} (one is {key!r})")
        slots[parsed.slot] = (parsed, value)
    return slots


def _align(sources: Mapping[str, Ratings]) -> Aligned:
    names = list(sources)
    base = by_slot(sources[names[0]], names[0])
    values = {names[0]: [v for _, v in base.values()]}
    renamed: dict[str, set[tuple[str, str]]] = {}
    for name in names[1:]:
        theirs = by_slot(sources[name], name)
        if theirs.keys() != base.keys():
            first = min(theirs.keys() ^ base.keys())
            side = f"only in {names[0]}" if first in base else f"only in {name}"
            example = (base.get(first) or theirs.get(first))[0]
            raise ValueError(f"{name} and {names[0]} differ: first divergent key "
                             f"{example.category}_{example.index:02d}_{example.subject}-{example.image} ({side}); "
                             f"{len(theirs.keys() - base.keys())} keys only in {name}, "
                             f"{len(base.keys() - theirs.keys())} only in {names[0]}")
        for slot, (ours, _) in base.items():
            if theirs[slot][0].subject != ours.subject:
                renamed.setdefault(name, set()).add((ours.subject, theirs[slot][0].subject))
        values[name] = [theirs[slot][1] for slot in base]
    return Aligned([k for k, _ in base.values()], values, renamed)


@dataclass
class Alignment:
    """Per category: each metric's correlation per method and its Fisher-z mean over methods."""

    category: str
    methods: list[str]
    rows: dict[str, list[float]]  # metric (or "Human-Human") → r per method
    renamed: dict[str, set[tuple[str, str]]]

    def mean(self, metric: str) -> float:
        return stats.fisher_z_mean(self.rows[metric])


HUMAN = "Human-Human"


def human_alignment(group1: Mapping[str, Ratings], group2: Mapping[str, Ratings],
                    metrics: Mapping[str, Mapping[str, Ratings]], category: str,
                    methods: Iterable[str] | None = None) -> Alignment:
    """The DreamBench++ table for one category (``all`` = every image), over every rated method
    (the protocol) or only ``methods``."""
    if category != "all" and category not in CATEGORIES:
        raise ValueError(f"unknown category {category!r}; choose from {', '.join(CATEGORIES)} or all")
    rated = [m for m in METHODS if m in group1] + sorted(set(group1) - set(METHODS))
    if methods is not None:
        unknown = sorted(set(methods) - set(rated))
        if unknown:
            raise ValueError(f"no human ratings for method(s) {', '.join(unknown)}; rated: {', '.join(rated)}")
        rated = [m for m in rated if m in set(methods)]
    methods = rated
    if set(group1) != set(group2):
        raise ValueError(f"the annotator groups rate different methods: {sorted(set(group1) ^ set(group2))}")
    for metric, files in metrics.items():
        missing = set(methods) - set(files)
        if missing:
            raise ValueError(f"metric {metric}: no rating file for {', '.join(sorted(missing))}")
    rows: dict[str, list[float]] = {HUMAN: [], **{m: [] for m in metrics}}
    renamed: dict[str, set] = {}
    for method in methods:
        sources = {"group1": group1[method], "group2": group2[method]}
        sources.update({metric: files[method] for metric, files in metrics.items()})
        aligned = align(sources, method)
        for source, pairs in aligned.renamed.items():
            renamed.setdefault(source, set()).update(pairs)
        if category != "all":
            aligned = aligned.subset([category])
        if not aligned.keys:
            raise ValueError(f"{method}: no images of category {category}")
        g1, g2 = aligned.values["group1"], aligned.values["group2"]
        where = f"{method}'s images" + ("" if category == "all" else f" of category {category}")
        correlatable(g1, rating_source(group1[method], "human ratings group1"), where)
        correlatable(g2, rating_source(group2[method], "human ratings group2"), where)
        rows[HUMAN].append(round(stats.pearson(g1, g2), 4))
        for metric in metrics:
            m, h1, h2 = scored(aligned.values[metric], g1, g2)
            correlatable(m, rating_source(metrics[metric][method], f"metric {metric}"), where, len(g1))
            rows[metric].append((round(stats.pearson(m, h1), 4) + round(stats.pearson(m, h2), 4)) / 2)
    return Alignment(category, methods, rows, renamed)


def correlatable(values: list[float], name: str, where: str, total: int | None = None) -> None:
    """A correlation needs two or more scores that differ: say whose scores fail, and where."""
    total = len(values) if total is None else total
    if len(values) < 2:
        raise ValueError(f"{name}: {total - len(values)} of the {total} scores of {where} are missing (null or NaN); "
                         "a correlation needs at least 2")
    if all(v == values[0] for v in values):
        raise ValueError(f"{name}: all {len(values)} scores of {where} are equal ({values[0]:g}); "
                         "the correlation is undefined")


def scored(metric: list[float], *others: list[float]) -> tuple[list[float], ...]:
    """Keep only the images the metric scored (NaN = no score)."""
    keep = [i for i, v in enumerate(metric) if math.isfinite(v)]
    return tuple([values[i] for i in keep] for values in (metric, *others))


@dataclass
class Pooled:
    """The ID-Sim protocol's result for one metric."""

    spearman: float
    kendall: float
    pairs: int
    subjects: int
    dropped: list[str]  # "method/key: reason"


def pool(group1: Mapping[str, Ratings], group2: Mapping[str, Ratings], metric: Mapping[str, Ratings],
         categories: Iterable[str]) -> tuple[list[float], list[float], set, list[str]]:
    """Every method's images of some categories, pooled: metric scores, mean human ratings, the
    subjects seen, and the pairs dropped (only those without a finite metric score, each listed)."""
    categories = list(categories)
    scores, human, dropped, subjects = [], [], [], set()
    for method in [m for m in METHODS if m in group1] + sorted(set(group1) - set(METHODS)):
        if method not in metric:
            raise ValueError(f"the metric has no rating file for {method}")
        aligned = align({"group1": group1[method], "group2": group2[method], "metric": metric[method]}, method)
        aligned = aligned.subset(categories)
        for key, g1, g2, m in zip(aligned.keys, aligned.values["group1"], aligned.values["group2"],
                                  aligned.values["metric"]):
            if not math.isfinite(m):
                dropped.append(f"{method}/{key.category}_{key.index:02d}_{key.subject}-{key.image}: no metric score")
                continue
            scores.append(m)
            human.append((g1 + g2) / 2)
            subjects.add((key.category, key.index))
    return scores, human, subjects, dropped


def idsim_protocol(group1: Mapping[str, Ratings], group2: Mapping[str, Ratings],
                   metric: Mapping[str, Ratings], name: str = "the metric") -> Pooled:
    """Spearman / Kendall of a metric (``name`` in errors) against the mean human rating, pooled
    over every method's animal and object images."""
    scores, human, subjects, dropped = pool(group1, group2, metric, IDSIM_CATEGORIES)
    folders = sorted({str(r.path.parent) for r in metric.values() if getattr(r, "path", None)})
    total = len(scores) + len(dropped)
    correlatable(scores, f"{name} ({', '.join(folders)})" if folders else name,
                 "every method's animal and object images", total)
    return Pooled(stats.spearman(scores, human), stats.kendall(scores, human), len(scores), len(subjects), dropped)
