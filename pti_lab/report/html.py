"""report.html: one self-contained page per sweep (inline CSS, pictures as base64 data URIs, no
script), readable offline from disk: claims, notes, every experiment's tables and figures, the runs
with their overrides and configs, and every image's pictures."""

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from PIL import Image

from pti_lab.report.sweep import Job, Sweep
from pti_lab.report.tables import Table, to_html

PICTURES = ("target.png", "inversion.png", "tuned.png", "edits.png")  # per image, in images/<name>/
PICTURE_SIZE = (256, 256)          # embedded per-image pictures are scaled down to fit this
EDITS_SIZE = (4096, 256)           # and grids of edits to this (two rows of at most 128 px)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 1em 2em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 1.6em; } h3 { margin-bottom: 0.3em; }
.meta { color: #555; margin: 0.2em 0; } code, pre { background: #f4f4f4; }
pre { padding: 0.6em; overflow-x: auto; font-size: 0.85em; white-space: pre-wrap; }
nav ol { columns: 2; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 0.3em 0; max-width: 60em; }
th, td { border: 1px solid #999; padding: 3px 8px; vertical-align: middle; }
th { background: #e8e8e8; } tbody tr:nth-child(even) { background: #f7f7f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.PASS { background: #c8efc8; font-weight: 700; } td.FAIL { background: #f6c4c4; font-weight: 700; }
td.not-run { background: #e4e4e4; color: #555; }
.note { color: #8a4b00; margin: 0.2em 0; }
figure { margin: 1em 0; } figure img { max-width: min(100%, 900px); max-height: 900px; border: 1px solid #ccc; }
figcaption { color: #555; font-size: 0.9em; }
img.picture { height: 96px; image-rendering: pixelated; }
img.grid { height: 160px; image-rendering: pixelated; }
details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; white-space: nowrap; }
"""


@dataclass
class ExperimentSection:
    name: str                      # e.g. "table1"
    tables: list[Table]
    figures: dict[str, Path]       # caption -> PNG


def data_uri(path: Path, fit: Optional[tuple[int, int]] = None) -> str:
    """The picture as a PNG data URI, scaled down to fit (width, height) when given."""
    image = Image.open(path)
    if fit:
        image.thumbnail(fit)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def esc(value: object) -> str:
    return html.escape(str(value))


def claims_section(claims: list[tuple[str, str, str]]) -> str:
    rows = "".join(f'<tr><td>{esc(claim)}</td><td class="{status.replace(" ", "-")}">{esc(status)}</td>'
                   f"<td>{esc(evidence)}</td></tr>" for claim, status, evidence in claims)
    return ('<section id="claims"><h2>Claims</h2><table><thead><tr><th>claim</th><th>status</th><th>numbers</th>'
            f"</tr></thead><tbody>{rows}</tbody></table></section>")


def notes_section(notes: list[str]) -> str:
    items = "".join(f"<li>{esc(note)}</li>" for note in notes) or "<li>every job is complete</li>"
    return f'<section id="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def experiment_section(section: ExperimentSection) -> str:
    parts = [f'<section id="experiment-{esc(section.name)}"><h2>Experiment {esc(section.name)}</h2>']
    for table in section.tables:
        parts.append(f"<h3>{esc(table.name)}</h3>{to_html(table)}")
    for caption, path in section.figures.items():
        parts.append(f'<figure><img src="{data_uri(path)}" alt="{esc(caption)}">'
                     f"<figcaption>{esc(caption)} ({esc(path.stem)}.png, .pdf)</figcaption></figure>")
    return "".join(parts) + "</section>"


def job_label(job: Job, named: bool) -> str:
    """'3', or with several sweeps on one page 'table1/3' (the sweep folder and the job number)."""
    return f"{job.path.parent.name}/{job.number}" if named else str(job.number)


def runs_section(jobs: list[Job], named: bool) -> str:
    """A table of the jobs, then each job's composed config (.hydra/config.yaml) to unfold."""
    rows, configs = [], []
    for job in jobs:
        status = "finished" if job.summary is not None else "not finished"
        rows.append(f"<tr><td>{esc(job_label(job, named))}</td><td>{esc(job.experiment)}</td><td>{esc(job.method)}</td>"
                    f"<td>{esc(job.data)}</td><td><code>{esc(' '.join(job.overrides))}</code></td>"
                    f'<td class="num">{len(job.images)}</td><td>{status}</td></tr>')
        config = job.path / ".hydra" / "config.yaml"
        text = config.read_text() if config.is_file() else "(no .hydra/config.yaml)"
        configs.append(f"<details><summary>job {esc(job_label(job, named))} config</summary><pre>{esc(text)}</pre></details>")
    return ('<section id="runs"><h2>Runs</h2><table><thead><tr><th>job</th><th>experiment</th><th>method</th>'
            "<th>data</th><th>overrides</th><th>images</th><th>status</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>{''.join(configs)}</section>")


def pictures_section(jobs: list[Job], named: bool) -> str:
    parts = ['<section id="pictures"><h2>Pictures</h2><p>Per image: target, W/W+ inversion, tuned '
             "reconstruction, and the edits (top row: tuned generator; bottom row: original generator).</p>"]
    for job in jobs:
        folders = sorted(p.name for p in (job.path / "images").glob("*") if p.is_dir())
        images = list(dict.fromkeys([*(row["image"] for row in job.rows), *folders]))
        rows = []
        for image in images:
            cells = []
            for filename in PICTURES:
                path = job.picture(image, filename)
                css, fit = ("grid", EDITS_SIZE) if filename == "edits.png" else ("picture", PICTURE_SIZE)
                cells.append(f'<td><img class="{css}" src="{data_uri(path, fit)}" alt="{esc(image)} {filename}"></td>'
                             if path else "<td>—</td>")
            rows.append(f"<tr><td>{esc(image)}</td>{''.join(cells)}</tr>")
        head = "".join(f"<th>{name.removesuffix('.png')}</th>" for name in PICTURES)
        parts.append(f"<details><summary>job {esc(job_label(job, named))}: {esc(job.method)} on {esc(job.data)} "
                     f"({esc(job.experiment)}, {len(images)} images)</summary><table><thead><tr><th>image</th>{head}"
                     f"</tr></thead><tbody>{''.join(rows)}</tbody></table></details>")
    return "".join(parts) + "</section>"


def render_page(sweeps: list[Sweep], sections: list[ExperimentSection], claims: list[tuple[str, str, str]],
                notes: list[str], code_version: str, written: str) -> str:
    """The whole page, of one sweep or of several (the paper's four).

    sections:     one per experiment, in the order of the sweeps' jobs
    claims:       (claim, status, evidence) rows
    notes:        what is missing or incomplete
    code_version: `git describe --always --dirty` of the code, else the package version
    written:      when the report was written
    """
    named = len(sweeps) > 1
    jobs = [job for sweep in sweeps for job in sweep.jobs]
    title = f"PTI sweep report: {sweeps[0].path.name}" if not named else \
        f"PTI report: {', '.join(sweep.path.name for sweep in sweeps)}"
    contents = [("claims", "Claims"), ("notes", "Notes"),
                *((f"experiment-{s.name}", f"Experiment {s.name}") for s in sections),
                ("runs", "Runs"), ("pictures", "Pictures"), ("sweep-config", "Sweep configuration")]
    nav = "".join(f'<li><a href="#{esc(anchor)}">{esc(title)}</a></li>' for anchor, title in contents)
    meta, configs = [], []
    for sweep in sweeps:
        multirun_file = sweep.path / "multirun.yaml"
        multirun = multirun_file.read_text() if multirun_file.is_file() else "(no multirun.yaml)"
        meta.append(f'<p class="meta">sweep directory <code>{esc(sweep.path.resolve())}</code> · '
                    f'{len(sweep.jobs)} job folders; command:</p><pre>{esc(sweep.command)}</pre>')
        configs.append(f"<details><summary>{esc(sweep.path.name)}/multirun.yaml</summary><pre>{esc(multirun)}</pre></details>")
    body = [f"<h1>{esc(title)}</h1>",
            f'<p class="meta">code {esc(code_version)} · written {esc(written)}</p>', *meta,
            f"<nav><h2>Contents</h2><ol>{nav}</ol></nav>",
            claims_section(claims), notes_section(notes), *(experiment_section(s) for s in sections),
            runs_section(jobs, named), pictures_section(jobs, named),
            f'<section id="sweep-config"><h2>Sweep configuration</h2>{"".join(configs)}</section>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(body) + "\n</body></html>\n")
