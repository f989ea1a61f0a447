"""Tables of the alignment results: terminal text, CSV and Markdown from one set of rows."""

from __future__ import annotations

import csv
import io
from typing import Sequence

from .dreambench import Alignment, Pooled

SHORT = {"textual_inversion_sd": "TI-SD", "dreambooth_sd": "DB-SD", "dreambooth_lora_sdxl": "DB-LoRA-SDXL",
         "blip_diffusion": "BLIP-Diff", "emu2": "Emu2", "ip_adapter_plus_vit_h_sdxl": "IPA+ ViT-H",
         "ip_adapter_vit_g_sdxl": "IPA ViT-G"}


def alignment_rows(result: Alignment) -> tuple[list[str], list[list[str]]]:
    header = ["metric", *(SHORT.get(m, m) for m in result.methods), "Fisher-z mean"]
    rows = [[name, *(f"{r:.4f}" for r in values), f"{result.mean(name):.4f}"] for name, values in result.rows.items()]
    return header, rows


def pooled_rows(results: dict[str, Pooled]) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "Spearman", "Kendall", "pairs", "subjects", "dropped"]
    rows = [[name, f"{p.spearman:.4f}", f"{p.kendall:.4f}", str(p.pairs), str(p.subjects), str(len(p.dropped))]
            for name, p in results.items()]
    return header, rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]
    line = lambda cells: "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
    return "\n".join([line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def csv_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def renames(result: Alignment) -> list[str]:
    return [f"{source}: subject '{ours}' is called '{theirs}' there (matched by category and index)"
            for source, pairs in sorted(result.renamed.items()) for ours, theirs in sorted(pairs)]
