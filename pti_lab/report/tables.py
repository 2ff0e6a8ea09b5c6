"""The tables of an experiment, built from its runs' numbers and written as CSV, Markdown and LaTeX.

One row per run (method, data set and the experiment's own keys). The CSV holds every mean at full
precision with its `_std` and the row's `n`, empty where there is no value; the Markdown, LaTeX and
HTML forms show mean ± std, "—" where there is no value, and the best value in bold among the rows
that are compared (those of one data set; for edits, of one edit and strength).
"""

import csv
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from pti_lab.atomic import write_text
from pti_lab.report.numbers import (DRIFT_METRICS, EDIT_METRICS, LOWER_IS_BETTER, NOT_RANKED, PEAK_MEMORY,
                                    RECONSTRUCTION_METRICS, RunNumbers, Stat, compare_at_equal_change)
from pti_lab.tracking.memory import MEASURES

MISSING = "—"
BENCHMARK = "benchmark"            # the experiment whose first table is GANInverter's benchmark table
BENCHMARK_COLUMNS = {"mse": "MSE", "lpips": "LPIPS", "ms_ssim": "MS-SSIM", "id_sim": "ID",
                     "seconds": "Time (s)/image", PEAK_MEMORY: "Memory (MiB)/image"}


@dataclass
class TableRow:
    labels: dict[str, str]         # key column -> text
    values: dict[str, Stat]        # value column -> number
    n: Optional[int] = None        # images behind the row


@dataclass
class Table:
    name: str                      # file stem, e.g. "table2_edits"
    title: str                     # one line saying what the numbers are
    keys: list[str]                # label columns
    columns: list[str]             # value columns (metric names)
    rows: list[TableRow]
    compare_within: tuple[str, ...] = ()  # key columns that must match for rows to be ranked together
    with_std: bool = True          # mean ± std (else the mean alone)
    with_n: bool = True            # an `n` column
    notes: list[str] = field(default_factory=list)
    headings: dict[str, str] = field(default_factory=dict)  # value column -> its heading, where not its name

    def best(self) -> set[tuple[int, str]]:
        """(row index, column) of the best value of each column among the rows compared together
        (values equal to it as shown, to 4 significant digits, too)."""
        best = set()
        for column in self.columns:
            if column in NOT_RANKED:
                continue
            pick = min if column in LOWER_IS_BETTER else max
            groups: dict[tuple, list[int]] = {}
            for index, row in enumerate(self.rows):
                if row.values[column].mean is not None:
                    groups.setdefault(tuple(row.labels[k] for k in self.compare_within), []).append(index)
            for indices in groups.values():
                if len(indices) > 1:
                    top = number(pick(self.rows[i].values[column].mean for i in indices))
                    best |= {(i, column) for i in indices if number(self.rows[i].values[column].mean) == top}
        return best


# -- building -------------------------------------------------------------------------------------

def row_labels(runs: list[RunNumbers]) -> list[dict[str, str]]:
    """Key columns of each run: method, data set and the experiment's report keys; runs that would
    share a row are told apart by a `setting` column listing the overrides in which they differ (and
    the job number where those are the same)."""
    keys = list(dict.fromkeys(key for run in runs for key in run.job.keys))
    labels = [{"method": run.job.method, "data": run.job.data, **{k: str(run.job.keys.get(k, "")) for k in keys}}
              for run in runs]
    collide = [sum(other == mine for other in labels) > 1 for mine in labels]
    if any(collide):
        colliding = [run.job.overrides for run, c in zip(runs, collide) if c]
        shared = set.intersection(*(set(o) for o in colliding))
        for label, run, c in zip(labels, runs, collide):
            label["setting"] = " ".join(o for o in run.job.overrides if o not in shared) if c else ""
        same = [sum(other == label for other in labels) > 1 for label in labels]
        for label, run, s in zip(labels, runs, same):
            if s:
                label["setting"] = f"{label['setting']} (job {run.job.number})".lstrip()
    return labels


def run_label(labels: dict[str, str]) -> str:
    """A run's name within one data set: its method, and its other key columns when it has any."""
    others = [f"{key}={value}" for key, value in labels.items() if key not in ("method", "data") and value]
    return labels["method"] + (f" ({', '.join(others)})" if others else "")


def measured_at(runs: list[RunNumbers]) -> str:
    """Where the captions say the size reconstruction metrics were measured at: "MSE, PSNR, SSIM,
    MS-SSIM and LPIPS at 256×256", naming the runs at each size when they differ ("" when unknown)."""
    sizes: dict[str, list[str]] = {}
    for labels, run in zip(row_labels(runs), runs):
        if run.eval_size is not None:
            sizes.setdefault(run.eval_size, []).append(f"{run_label(labels)}, {labels['data']}")
    if not sizes:
        return ""
    if len(sizes) == 1:
        return f"MSE, PSNR, SSIM, MS-SSIM and LPIPS at {next(iter(sizes))}"
    return "MSE, PSNR, SSIM, MS-SSIM and LPIPS at " + "; ".join(f"{size} ({'; '.join(names)})"
                                                               for size, names in sizes.items())


def caption(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def reconstruction_table(experiment: str, runs: list[RunNumbers]) -> Table:
    rows = [TableRow(labels, run.reconstruction, run.images) for labels, run in zip(row_labels(runs), runs)]
    return Table(name=experiment, keys=list(rows[0].labels), columns=list(RECONSTRUCTION_METRICS), rows=rows,
                 compare_within=("data",),
                 title=caption(f"{experiment}: reconstruction, mean ± std over images of the final stage (tuning, "
                               f"else inversion)", measured_at(runs), "seconds per image over all stages"))


def benchmark_table(experiment: str, runs: list[RunNumbers]) -> Table:
    """GANInverter's benchmark table: per method the means over images of MSE, LPIPS, MS-SSIM and identity
    of the final reconstruction, the seconds per image (all stages) and the peak memory per image."""
    rows = [TableRow(labels, run.reconstruction, run.images) for labels, run in zip(row_labels(runs), runs)]
    measures = dict.fromkeys(run.memory_measure for run in runs if run.memory_measure)
    identity = ", ".join(dict.fromkeys(str(run.job.choices.get("identity", "?")) for run in runs))
    memory = ("memory: " + "; ".join(MEASURES.get(measure, measure) for measure in measures)
              + " during the image's group") if measures else "memory: not measured"
    return Table(name=experiment, keys=list(rows[0].labels), columns=list(BENCHMARK_COLUMNS), rows=rows,
                 compare_within=("data",), with_std=False, headings=BENCHMARK_COLUMNS,
                 title=caption(f"{experiment}: mean over images of the final reconstruction (tuning, else inversion)",
                               measured_at(runs), f"LPIPS AlexNet; ID: identity similarity (identity={identity})",
                               "time: seconds per image over all stages", memory))


def edit_table(experiment: str, runs: list[RunNumbers]) -> Table:
    rows = []
    for labels, run in zip(row_labels(runs), runs):
        for (edit, strength), values in run.edits.items():
            rows.append(TableRow({**labels, "edit": edit, "strength": f"{strength:g}"}, values,
                                 max(value.n for value in values.values())))
    return Table(name=f"{experiment}_edits", keys=list(rows[0].labels), columns=list(EDIT_METRICS), rows=rows,
                 compare_within=("data", "edit", "strength"),
                 title=f"{experiment}: edits at equal strength, mean ± std over images; id_sim_target = "
                       f"identity to the source image, id_sim = to the method's own reconstruction")


def equal_change_table(experiment: str, runs: list[RunNumbers]) -> Table:
    rows = []
    for data in dict.fromkeys(run.job.data for run in runs):
        labelled = {run_label(labels): run for labels, run in zip(row_labels(runs), runs) if run.job.data == data}
        edits = dict.fromkeys(edit for run in labelled.values() for edit in run.edit_names())
        for edit in edits:
            for sign, level, values in compare_at_equal_change(labelled, edit):
                for label, value in values.items():
                    rows.append(TableRow({"data": data, "edit": edit, "side": "+" if sign > 0 else "-",
                                          "|target_delta|": f"{level:.4g}", "method": label},
                                         {"id_sim_target": Stat(value, None, 1)}))
    return Table(name=f"{experiment}_equal_change", keys=["data", "edit", "side", "|target_delta|", "method"],
                 columns=["id_sim_target"], rows=rows, compare_within=("data", "edit", "side", "|target_delta|"),
                 with_std=False, with_n=False,
                 title=f"{experiment}: identity to the source image at equal attribute change (interpolated "
                       f"between strengths, from the reconstruction at no change)")


def drift_table(experiment: str, runs: list[RunNumbers]) -> Table:
    rows = [TableRow(labels, {**run.drift, "lpips": run.reconstruction["lpips"]}, run.images)
            for labels, run in zip(row_labels(runs), runs)]
    for row, run in zip(rows, runs):
        row.labels.setdefault("identities", str(run.identities))
        row.labels.setdefault("regularizer", run.regularizer)
        for metric in DRIFT_METRICS:
            row.values.setdefault(metric, Stat(None, None, 0))
    return Table(name=f"{experiment}_drift", keys=list(rows[0].labels), columns=[*DRIFT_METRICS, "lpips"], rows=rows,
                 compare_within=("data", "identities"),
                 title=caption(f"{experiment}: drift of the tuned generator on random latents (run-level, from "
                               f"summary.json) and reconstruction LPIPS (mean ± std over images)",
                               measured_at(runs) and f"{measured_at(runs)}, the drift's LPIPS and MSE too"))


def experiment_tables(experiment: str, runs: list[RunNumbers]) -> list[Table]:
    """The reconstruction table (for the benchmark, GANInverter's), and the edit and drift tables where
    the runs have edits or drift."""
    tables = [(benchmark_table if experiment == BENCHMARK else reconstruction_table)(experiment, runs)]
    if any(run.edits for run in runs):
        tables += [edit_table(experiment, runs), equal_change_table(experiment, runs)]
    if any(run.drift for run in runs):
        tables.append(drift_table(experiment, runs))
    return tables


# -- formats --------------------------------------------------------------------------------------

def arrow(column: str) -> str:
    return "" if column in NOT_RANKED else (" ↓" if column in LOWER_IS_BETTER else " ↑")


def number(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}"


@dataclass
class Cell:
    text: str                      # a label, a mean, or MISSING
    std: str = ""                  # the standard deviation shown after the mean, "" for none
    best: bool = False             # the best value among the rows compared


def display(table: Table) -> list[list[Cell]]:
    """The cells shown for each row: labels, means with their std, the row's n."""
    best = table.best()
    out = []
    for index, row in enumerate(table.rows):
        line = [Cell(row.labels[k]) for k in table.keys]
        for column in table.columns:
            value = row.values[column]
            if value.mean is None:
                line.append(Cell(MISSING))
            else:
                std = number(value.std, 2) if table.with_std and value.std is not None else ""
                line.append(Cell(number(value.mean), std, (index, column) in best))
        if table.with_n:
            line.append(Cell(str(row.n) if row.n else MISSING))
        out.append(line)
    return out


def header(table: Table) -> list[str]:
    return [*table.keys, *(table.headings.get(c, c) + arrow(c) for c in table.columns), *(["n"] if table.with_n else [])]


def to_rows(table: Table) -> tuple[list[str], list[list]]:
    """The table as the CSV holds it: its columns (keys, each mean and its `_std`, `n`) and one list per
    row (labels, then numbers; None where there is no value). W&B's summary tables are these too."""
    values = [name for c in table.columns for name in ([c, f"{c}_std"] if table.with_std else [c])]
    rows = []
    for row in table.rows:
        line: list = [row.labels[k] for k in table.keys]
        for column in table.columns:
            line += [row.values[column].mean, row.values[column].std] if table.with_std else [row.values[column].mean]
        rows.append(line + ([row.n] if table.with_n else []))
    return [*table.keys, *values, *(["n"] if table.with_n else [])], rows


def to_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns, rows = to_rows(table)
    writer.writerow(columns)
    labels = len(table.keys)
    for line in rows:
        numbers = ["" if value is None else repr(value) for value in line[labels:]]
        writer.writerow(line[:labels] + numbers)
    return buffer.getvalue()


def to_markdown(table: Table) -> str:
    def line(items: list[str]) -> str:
        return "| " + " | ".join(item.replace("|", "\\|") for item in items) + " |"

    def text(cell: Cell) -> str:
        return (f"**{cell.text}**" if cell.best else cell.text) + (f" ± {cell.std}" if cell.std else "")

    head = header(table)
    align = ["---"] * len(table.keys) + ["---:"] * (len(head) - len(table.keys))
    body = [line([text(cell) for cell in row]) for row in display(table)]
    notes = ["", *(f"- {note}" for note in table.notes)] if table.notes else []
    return "\n".join([f"**{table.title}**", "", line(head), line(align), *body, *notes]) + "\n"


TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
               "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
               "—": "---", "±": r"$\pm$", "×": r"$\times$", "↓": r"$\downarrow$", "↑": r"$\uparrow$", "|": r"$|$"}


def tex(text: str) -> str:
    return "".join(TEX_SPECIAL.get(char, char) for char in text)


def to_latex(table: Table) -> str:
    def text(cell: Cell) -> str:
        mean = rf"\textbf{{{tex(cell.text)}}}" if cell.best else tex(cell.text)
        return mean + (rf" $\pm$ {cell.std}" if cell.std else "")

    head = header(table)
    spec = "l" * len(table.keys) + "r" * (len(head) - len(table.keys))
    body = [" & ".join(text(cell) for cell in row) + r" \\" for row in display(table)]
    return "\n".join([r"% needs \usepackage{booktabs}", r"\begin{table}[t]", r"\centering",
                      rf"\caption{{{tex(table.title)}}}", rf"\label{{tab:{table.name}}}",
                      rf"\begin{{tabular}}{{{spec}}}", r"\toprule", " & ".join(tex(h) for h in head) + r" \\",
                      r"\midrule", *body, r"\bottomrule", r"\end{tabular}", r"\end{table}"]) + "\n"


def to_html(table: Table) -> str:
    def text(cell: Cell) -> str:
        mean = html.escape(cell.text)
        return (f"<b>{mean}</b>" if cell.best else mean) + (f" ± {html.escape(cell.std)}" if cell.std else "")

    keys = len(table.keys)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header(table))
    body = "".join("<tr>" + "".join(f"<td>{text(c)}</td>" for c in row[:keys])
                   + "".join(f'<td class="num">{text(c)}</td>' for c in row[keys:]) + "</tr>"
                   for row in display(table))
    notes = "".join(f'<p class="note">{html.escape(note)}</p>' for note in table.notes)
    return (f'<table id="{html.escape(table.name)}"><caption>{html.escape(table.title)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{notes}")


def write_table(table: Table, out_dir: Path) -> list[Path]:
    """NAME.csv, NAME.md and NAME.tex in `out_dir`, each written atomically."""
    return [write_text(out_dir / f"{table.name}.csv", to_csv(table)),
            write_text(out_dir / f"{table.name}.md", to_markdown(table)),
            write_text(out_dir / f"{table.name}.tex", to_latex(table))]
