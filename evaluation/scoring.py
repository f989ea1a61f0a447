"""``idguide eval dreambench-score``: score DreamBench++-layout samples into rating files.

Layout: ``SAMPLES/<subject key>/<i>.<ext>`` (e.g. ``object_52_teapot/3.png``) and one reference per
subject anywhere under ``REFERENCES``, named by the subject key (``object_52_teapot.jpg``). Output:
``OUT/<method>.json`` mapping ``object_52_teapot-3`` (relative path, extension dropped, ``/`` → ``-``)
to ``100 × similarity`` — the published convention.

Resumable: scores are appended (flushed, fsynced) to ``OUT/<method>.partial-<rank>.jsonl`` as they
are computed; a rerun reads every partial file, skips what is done, and the final JSON is written
atomically (temporary file + rename), so a kill never leaves a truncated rating file. Under
``accelerate launch`` each process scores its share (``PartialState.split_between_processes``)
and the main process merges the shares. What produced the scores (scorer and options, weights,
precision, IDGuide version) heads each partial file and sits beside the final one
(``OUT/<method>.provenance.json``); a rerun with anything else stops and says what differs.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from ..scorers import checks
from ..scorers.images import IMAGE_SUFFIXES, load_image
from ..scorers.ranking import readable
from ..scorers.errors import ParameterError
from ..scorers.optional import require
from .dreambench import PROVENANCE, parse_key


def sample_keys(samples: Path) -> dict[str, Path]:
    if not samples.is_dir():
        raise ParameterError("samples", f"not a folder: {samples}")
    found = {}
    for path in sorted(p for p in samples.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        relative = path.relative_to(samples)
        if len(relative.parts) < 2:
            raise ParameterError("samples", f"{relative} is not inside a subject folder (<subject key>/<i>.png)")
        key = relative.with_suffix("").as_posix().replace("/", "-")
        try:
            parse_key(key, str(relative))
        except ValueError as error:
            raise ParameterError("samples", str(error)) from None
        if key in found:
            raise ParameterError("samples", f"{found[key]} and {path} give the same key {key!r}")
        found[key] = path
    if not found:
        raise ParameterError("samples", f"no images under {samples}")
    return found


def reference_files(references: Path, subjects: set[str]) -> dict[str, Path]:
    if not references.is_dir():
        raise ParameterError("references", f"not a folder: {references}")
    by_stem: dict[str, list[Path]] = {}
    for path in sorted(references.rglob("*")):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            by_stem.setdefault(path.stem, []).append(path)
    missing = sorted(subjects - set(by_stem))
    if missing:
        raise ParameterError("references", f"no reference image for {len(missing)} subject(s), first {missing[0]!r} "
                                           f"(expected {references}/{missing[0]}.jpg or .png)")
    twice = sorted(s for s in subjects if len(by_stem[s]) > 1)
    if twice:
        found = " and ".join(str(p.relative_to(references)) for p in by_stem[twice[0]])
        raise ParameterError("references", f"{len(twice)} subject(s) have several reference images, first "
                                           f"{twice[0]!r}: {found}; keep one per subject")
    return {s: by_stem[s][0] for s in subjects}


def rating_name(method: str) -> str:
    """``method`` checked to name one rating file in the output folder (``<method>.json`` and its
    companions), never a path out of it or a companion's name."""
    checks.file_name("method", method)
    if method.endswith(PROVENANCE.removesuffix(".json")) or ".partial-" in method:
        raise ParameterError("method", f"{method!r} would be read as a companion file of another method's ratings")
    return method


def provenance(scorer) -> dict:
    """What produces a rating file: resuming with anything else would mix two metrics in one file."""
    from .. import __version__

    return {"scorer": scorer.tag, "weights": getattr(scorer, "weights_id", "unknown"),
            "dtype": str(scorer.dtype).removeprefix("torch."), "idguide": __version__}


def provenance_path(out: Path, method: str) -> Path:
    """The final rating file keeps the published ``{key: score}`` format; its record sits beside it."""
    return out / f"{method}{PROVENANCE}"


def read_partials(out: Path, method: str, expected: dict | None = None) -> dict[str, float]:
    """Scores already computed: the final file if any, then every partial file (a line cut by a
    kill is ignored). With ``expected``, every file must have been written with that provenance."""
    done = {}
    final = out / f"{method}.json"
    if final.exists():
        record = provenance_path(out, method)
        check_provenance(json.loads(record.read_text()) if record.exists() else None, expected, final, out, method)
        done.update(json.loads(final.read_text()))
    for partial in sorted(out.glob(f"{glob.escape(method)}.partial-*.jsonl")):
        record = None
        for line in partial.read_text().splitlines():
            try:
                entry = json.loads(line)
                if isinstance(entry, dict):
                    record = entry.get("provenance")
                    continue
                key, value = entry
            except (ValueError, TypeError):
                continue
            check_provenance(record, expected, partial, out, method)
            done[key] = value
    return done


def check_provenance(found: dict | None, expected: dict | None, path: Path, out: Path, method: str) -> None:
    if expected is None or found == expected:
        return
    start_over = (f"to start over, delete {out / method}.json, {method}.provenance.json and "
                  f"{method}.partial-*.jsonl there, or choose another output folder")
    if found is None:
        raise ValueError(f"{path} holds scores with no record of what produced them; not resuming ({start_over})")
    differs = "; ".join(f"{k}: {found.get(k)!r} there, {v!r} now" for k, v in expected.items() if found.get(k) != v)
    raise ValueError(f"{path} was scored with other settings ({differs}); not resuming ({start_over})")


def write_atomic(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=4)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextmanager
def kept_on_interrupt(partial: Path):
    """Ctrl-C: say what was kept for a resume (the partial file is flushed after every batch)."""
    try:
        yield
    except KeyboardInterrupt:
        kept = sum(1 for line in partial.read_text().splitlines() if line.startswith("["))
        raise KeyboardInterrupt(f"{kept} scores kept in {partial}; run the same command again to resume") from None


def process_state():
    """accelerate's PartialState when available (it also works without ``accelerate launch``)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        PartialState = require("accelerate", "scoring with several processes").PartialState
    else:
        try:
            from accelerate import PartialState
        except ImportError:
            return None
    return PartialState(cpu=not torch.cuda.is_available())  # CPU processes (torchrun) sync over gloo


class Layout:
    """A DreamBench++-layout folder pair: samples by key, the reference of each subject."""

    def __init__(self, samples: Path, references: Path):
        self.samples = sample_keys(samples)
        self.subject = {k: p.relative_to(samples).parts[0] for k, p in self.samples.items()}
        self.references = reference_files(references, set(self.subject.values()))


def score_layout(scorer, layout: Layout, out: Path, method: str, batch_size: int = 1, state=None,
                 progress: Callable[[int, int], None] | None = None, check: Callable[[], None] | None = None) -> Path:
    """Score every sample against its subject's reference into ``out/<method>.json``, resuming from
    earlier partial files written with the same scorer, weights, precision and IDGuide version
    (anything else is refused: see ``provenance``). ``progress(done, total)`` after each batch (this
    process's count, with what was scored before); ``check()`` before each batch may raise to
    cancel (what was scored stays in the partial file; Ctrl-C says so)."""
    rating_name(method)
    out.mkdir(parents=True, exist_ok=True)
    record = provenance(scorer)
    rank, main = (state.process_index, state.is_main_process) if state else (0, True)
    if state:
        state.wait_for_everyone()  # every process reads what is done before any writes: one split for all
    done = read_partials(out, method, record)
    todo = [k for k in layout.samples if k not in done]
    if main and done:
        print(f"resuming: {len(layout.samples) - len(todo)} of {len(layout.samples)} images already scored",
              file=sys.stderr)
    skipped = len(layout.samples) - len(todo)
    if state:
        with state.split_between_processes(todo) as share:
            todo = list(share)
    embedded = {}
    partial = out / f"{method}.partial-{rank}.jsonl"
    with open(partial, "a") as log, torch.inference_mode(), kept_on_interrupt(partial):
        log.write(json.dumps({"provenance": record}) + "\n")
        for start in range(0, len(todo), batch_size):
            if check:
                check()
            keys = todo[start : start + batch_size]
            for subject in {layout.subject[k] for k in keys} - set(embedded):
                embedded[subject] = scorer.embed(load_image(layout.references[subject])[None].to(scorer.device))
            images = scorer.embed([load_image(layout.samples[k]).to(scorer.device) for k in keys])
            for i, key in enumerate(keys):
                value = readable(float(scorer.similarity(embedded[layout.subject[key]], images[i])))
                log.write(json.dumps([key, round(value, 6)]) + "\n")
            log.flush()
            os.fsync(log.fileno())
            if progress:
                progress(skipped + start + len(keys), len(layout.samples))
    if state:
        state.wait_for_everyone()
    final = out / f"{method}.json"
    if main:
        done = read_partials(out, method, record)
        missing = [k for k in layout.samples if k not in done]
        if missing:
            raise ValueError(f"{len(missing)} images have no score after scoring (first {missing[0]}); rerun to resume")
        write_atomic(provenance_path(out, method), record)
        write_atomic(final, {k: done[k] for k in sorted(layout.samples)})
        for partial in out.glob(f"{glob.escape(method)}.partial-*.jsonl"):
            partial.unlink()
    return final
