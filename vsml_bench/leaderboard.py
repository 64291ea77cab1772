"""The leaderboard: ranked tables, accuracy curves and grid heat maps from result files.

`build_leaderboard(folder)` reads every `folder/results/*.json` (see
`vsml_bench.results`) and writes `folder/README.md`, `folder/index.html` and the plots
under `folder/plots/`. For each track there is one table ranking the entries by mean
accuracy over the track's meta-test tasks, one accuracy-curve plot per task with every
entry of the track, and, on the dataset generalisation grid (tracks `grid`, `grid-cpu`),
one heat map per learner of meta-training suite (rows) by meta-test dataset (columns).

The output depends on the result files alone (sorted, no build time, SVGs with a fixed
hash salt and no date), so `check_leaderboard(folder)` can render it again and list what
differs from the committed pages.

Choices: an entry is one result file, identified by learner name, options, track and
meta-training suite (a grid learner has one entry per suite). A track's tasks are those
its suites meta-test on (`vsml_bench.results.tracks`). An entry that lacks some of them
is listed after the complete ones, without a rank, because a mean over fewer tasks is
not comparable. The interval of a mean over tasks combines the tasks' intervals as
independent: sqrt(sum ci^2) / n.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import io
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from vsml_bench.errors import UserError
from vsml_bench.results import Track, load_result, tracks

logger = logging.getLogger(__name__)

RESULTS_DIR = "results"
PLOTS_DIR = "plots"
GRID_TRACKS = ("grid", "grid-cpu")
TITLE = "vsml-bench leaderboard"

# Fixed salt and no date: the same results give byte-identical SVG files.
_PLOT_STYLE = {
    "svg.hashsalt": "vsml-bench-leaderboard",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "text.parse_math": False,
    "text.usetex": False,
}
_SVG_METADATA = {"Date": None, "Creator": None}
_LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Entry:
    """One result file.

    Attributes:
        file: its name inside `results/`.
        result: the validated document.
    """

    file: str
    result: dict

    @property
    def learner_key(self) -> tuple[str, str]:
        """Learner name and options (canonical JSON): what makes a learner distinct."""
        learner = self.result["learner"]
        return learner["name"], json.dumps(learner["options"], sort_keys=True)

    @property
    def key(self) -> tuple[str, str, str, str]:
        """What two result files must not share."""
        return (*self.learner_key, self.result["track"], self.result["suite"] or "")

    @property
    def label(self) -> str:
        """The learner's name with its options, e.g. `vsml (hidden=8)`."""
        learner = self.result["learner"]
        options = ", ".join(
            f"{k}={json.dumps(v)}" for k, v in sorted(learner["options"].items())
        )
        return f"{learner['name']} ({options})" if options else learner["name"]

    def metrics(self, task: str) -> dict | None:
        """The metrics of a task, or None if the file has no result for it."""
        for entry in self.result["tasks"]:
            if entry["task"] == task:
                return entry["metrics"]
        return None


@dataclass(frozen=True)
class Row:
    """An entry's line in a track's table.

    Attributes:
        rank: 1 for the best; None for an entry that misses some of the track's tasks.
        entry: the result.
        accuracy, accuracy_ci95: mean accuracy over the tasks it has, and its interval.
        vs_adam, vs_adam_ci95: mean difference to Adam, or None unless every task has
            one.
    """

    rank: int | None
    entry: Entry
    accuracy: float
    accuracy_ci95: float
    vs_adam: float | None
    vs_adam_ci95: float | None


@dataclass(frozen=True)
class Plot:
    """A plot file of the pages: its path under the folder, a caption, its SVG."""

    path: str
    caption: str
    svg: bytes


@dataclass(frozen=True)
class TrackView:
    """Everything the pages show for one track."""

    track: Track
    tasks: tuple[str, ...]
    rows: tuple[Row, ...]
    curves: tuple[Plot, ...]
    heat_maps: tuple[Plot, ...]


def load_entries(folder: Path) -> list[Entry]:
    """Every validated result of `folder/results/`, sorted by file name.

    Raises `UserError` for an invalid file, and for two files with the same learner,
    options, track and suite (naming both).
    """
    results = Path(folder) / RESULTS_DIR
    entries = []
    seen: dict[tuple, str] = {}
    for path in sorted(results.glob("*.json")):
        entry = Entry(path.name, load_result(path))
        if entry.key in seen:
            name, options, track, suite = entry.key
            raise UserError(
                f"{results / seen[entry.key]} and {path} both hold learner {name!r} "
                f"with options {options} on track {track!r}, suite {suite or None!r}; "
                "keep one of them"
            )
        seen[entry.key] = path.name
        entries.append(entry)
    return entries


def _combine(values: Sequence[float], cis: Sequence[float]) -> tuple[float, float]:
    """Mean of per-task values and its interval, the tasks taken as independent."""
    n = len(values)
    return sum(values) / n, math.sqrt(sum(c * c for c in cis)) / n


def rank_entries(entries: Sequence[Entry], track: Track) -> list[Row]:
    """The rows of a track's table: complete entries ranked by mean accuracy first."""
    rows = []
    for entry in entries:
        found = [m for m in map(entry.metrics, track.tasks) if m is not None]
        complete = len(found) == len(track.tasks)
        accuracy, accuracy_ci = _combine(
            [m["accuracy"] for m in found], [m["accuracy_ci95"] for m in found]
        )
        vs_adam = vs_adam_ci = None
        if complete and all(m["vs_adam"] for m in found):
            vs_adam, vs_adam_ci = _combine(
                [m["vs_adam"]["accuracy"] for m in found],
                [m["vs_adam"]["accuracy_ci95"] for m in found],
            )
        rank = 0 if complete else None  # numbered below, once sorted
        rows.append(Row(rank, entry, accuracy, accuracy_ci, vs_adam, vs_adam_ci))

    rows.sort(
        key=lambda row: (
            row.rank is None,
            -row.accuracy,
            row.entry.label,
            row.entry.result["suite"] or "",
            row.entry.file,
        )
    )
    return [
        row if row.rank is None else dataclasses.replace(row, rank=i + 1)
        for i, row in enumerate(rows)
    ]


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.")[:40]
    return slug or "learner"


def _save(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata=_SVG_METADATA)
    return buffer.getvalue()


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _curve_plot(track: Track, task: str, rows: Sequence[Row]) -> bytes:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.6))
    axes = figure.add_subplot()
    colors = [f"C{i}" for i in range(10)]
    for i, row in enumerate(rows):
        metrics = row.entry.metrics(task)
        if metrics is None:
            continue
        label = row.entry.label
        if track.name in GRID_TRACKS:
            label += f" [{row.entry.result['suite'] or 'no meta-training'}]"
        axes.plot(
            metrics["curve"]["steps"],
            metrics["curve"]["accuracy"],
            color=colors[i % len(colors)],
            linestyle=_LINE_STYLES[(i // len(colors)) % len(_LINE_STYLES)],
            linewidth=1.2,
            label=_short(label),
        )
    axes.set_title(f"{track.name}: {task}")
    axes.set_xlabel("step within the episode")
    axes.set_ylabel("online accuracy (binned mean)")
    axes.set_ylim(0.0, 1.0)
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return _save(figure)


def heat_map_values(track: Track, entries: Sequence[Entry]):
    """One learner's accuracy by meta-training suite and meta-test task.

    Args:
        track: a grid track.
        entries: the learner's entries on it (one per suite).
    Returns:
        `suites` (rows: None first if an entry has no suite, then registry order),
        and `values`: [len(suites), len(track.tasks)] float, NaN where missing.
    """
    import numpy as np

    by_suite = {entry.result["suite"]: entry for entry in entries}
    suites = ([None] if None in by_suite else []) + [
        s for s in track.suites if s in by_suite
    ]
    values = np.full((len(suites), len(track.tasks)), np.nan)
    for i, suite in enumerate(suites):
        for j, task in enumerate(track.tasks):
            metrics = by_suite[suite].metrics(task)
            if metrics is not None:
                values[i, j] = metrics["accuracy"]
    return suites, values


def _heat_map(track: Track, entries: Sequence[Entry]) -> bytes:
    import numpy as np
    from matplotlib.figure import Figure

    suites, values = heat_map_values(track, entries)

    figure = Figure(figsize=(1.2 + 0.9 * len(track.tasks), 1.4 + 0.4 * len(suites)))
    axes = figure.add_subplot()
    image = axes.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (i, j), value in np.ndenumerate(values):
        if not np.isnan(value):
            axes.text(
                j,
                i,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="black" if value > 0.6 else "white",
            )
    axes.set_xticks(range(len(track.tasks)))
    axes.set_xticklabels(
        [t.split("/")[0] for t in track.tasks], rotation=30, ha="right"
    )
    axes.set_yticks(range(len(suites)))
    axes.set_yticklabels([s or "no meta-training" for s in suites])
    axes.set_xlabel("meta-test dataset")
    axes.set_ylabel("meta-trained on")
    axes.set_title(_short(entries[0].label, 60))
    figure.colorbar(image, ax=axes, label="accuracy")
    return _save(figure)


def _track_view(track: Track, entries: Sequence[Entry]) -> TrackView:
    import matplotlib

    rows = rank_entries(entries, track)
    tasks = tuple(t for t in track.tasks if any(e.metrics(t) for e in entries))
    with matplotlib.rc_context(_PLOT_STYLE):
        curves = tuple(
            Plot(
                f"{PLOTS_DIR}/curves-{track.name}-{task.replace('/', '-')}.svg",
                f"{track.name}: accuracy over the episode on {task}",
                _curve_plot(track, task, rows),
            )
            for task in tasks
        )
        heat_maps = []
        if track.name in GRID_TRACKS:
            learners: dict[tuple[str, str], list[Entry]] = {}
            for row in rows:
                learners.setdefault(row.entry.learner_key, []).append(row.entry)
            for key in sorted(learners):
                digest = hashlib.sha256("\0".join(key).encode()).hexdigest()[:8]
                group = learners[key]
                heat_maps.append(
                    Plot(
                        f"{PLOTS_DIR}/heatmap-{track.name}-{_slug(key[0])}-{digest}.svg",
                        f"{group[0].label}: meta-training suite by meta-test dataset",
                        _heat_map(track, group),
                    )
                )
    return TrackView(track, tasks, tuple(rows), curves, tuple(heat_maps))


def _count(n: int) -> str:
    if n < 10_000:
        return f"{n:,}"
    for size, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.3g}{suffix}"
    return str(n)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def _pm(value: float, ci: float, signed: bool = False) -> str:
    # Adding 0.0 turns a rounded -0.0 into 0.0, so no "-0.000" is shown.
    value = round(value, 3) + 0.0
    return f"{value:+.3f} ± {ci:.3f}" if signed else f"{value:.3f} ± {ci:.3f}"


def _cells(row: Row, view: TrackView) -> dict[str, list[str]]:
    """Plain-text cells of a row (one string per line), before escaping."""
    result = row.entry.result
    meta = result["meta_training"]
    protocol = result["protocol"]
    cells = {
        "#": [str(row.rank) if row.rank else "–"],
        "learner": [row.entry.label]
        + (["(plug-in)"] if result["learner"]["source"] == "plugin" else []),
        "meta-trained on": [result["suite"] or "—"],
        "mean accuracy": [_pm(row.accuracy, row.accuracy_ci95)]
        + ([] if row.rank else ["(incomplete)"]),
    }
    for task in view.tasks:
        metrics = row.entry.metrics(task)
        if metrics is None:
            cells[task] = ["—"]
            continue
        lines = [_pm(metrics["accuracy"], metrics["accuracy_ci95"])]
        if metrics["vs_adam"]:
            vs = metrics["vs_adam"]
            lines.append("vs Adam " + _pm(vs["accuracy"], vs["accuracy_ci95"], True))
        cells[task] = lines
    cells["vs Adam (mean)"] = [
        "—" if row.vs_adam is None else _pm(row.vs_adam, row.vs_adam_ci95, True)
    ]
    cells["meta-params"] = [f"{result['learner']['num_meta_params']:,}"]
    if meta["method"] == "none":
        cells["meta-training"] = ["none"]
    else:
        cells["meta-training"] = [
            f"{meta['method']}: {_count(meta['episodes'])} episodes, "
            f"{_count(meta['steps'])} steps",
            f"{_duration(meta['wall_time_s'])} on {meta['hardware']}",
        ]
    cells["meta-test"] = [
        f"{protocol['episodes']:,} episodes × {protocol['steps']:,} steps, "
        f"seed {protocol['seed']}"
    ]
    return cells


def _columns(view: TrackView) -> list[str]:
    return [
        "#",
        "learner",
        "meta-trained on",
        "mean accuracy",
        *view.tasks,
        "vs Adam (mean)",
        "meta-params",
        "meta-training",
        "meta-test",
        "result",
    ]


_SCHEMA_DOC = "../docs/results.md"
_INTRO = (
    "Generated by `vsml-bench leaderboard` from the files in `results/` (schema: "
    "{schema}); do not edit by hand. Accuracy is the mean online accuracy "
    "over every step of the meta-test episodes (each example is predicted before its "
    "label is shown), ± the half-width of its 95% confidence interval over episodes. "
    "'vs Adam' is the difference to online Adam on identical episodes. Means over "
    "tasks treat the tasks as independent. Entries missing a task of their track are "
    "listed last, without a rank."
)
_EMPTY = (
    "No results yet: add result files to `results/` and run `vsml-bench leaderboard`."
)


def _md(text: str) -> str:
    """Text safe in a Markdown table cell: no HTML, markup, math or cell breaks."""
    text = html.escape(text, quote=False)
    return re.sub(r"([\\`*_\[\]|#$])", r"\\\1", text)


def _markdown(views: Sequence[TrackView]) -> str:
    intro = _INTRO.format(schema=f"[docs/results.md]({_SCHEMA_DOC})")
    lines = [f"# {TITLE}", "", intro, ""]
    if not views:
        lines += [_EMPTY, ""]
    for view in views:
        lines += [
            f"## Track {_md(view.track.name)}",
            "",
            f"Meta-test tasks: {_md(', '.join(view.track.tasks))}.",
            "",
        ]
        columns = _columns(view)
        lines.append("| " + " | ".join(_md(c) for c in columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for row in view.rows:
            cells = _cells(row, view)
            text = ["<br>".join(_md(line) for line in cells[c]) for c in columns[:-1]]
            link = f"[{_md(row.entry.file)}]({RESULTS_DIR}/{quote(row.entry.file)})"
            lines.append("| " + " | ".join(text + [link]) + " |")
        lines.append("")
        if view.heat_maps:
            lines += ["### Meta-training suite by meta-test dataset", ""]
            for plot in view.heat_maps:
                lines += [f"![{_md(plot.caption)}]({quote(plot.path)})", ""]
        lines += ["### Accuracy curves", ""]
        for plot in view.curves:
            lines += [f"![{_md(plot.caption)}]({quote(plot.path)})", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 88em;
       padding: 0 1em; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }
th { background: #f0f0f0; }
td.num, td.nowrap { text-align: right; white-space: nowrap; }
td.nowrap { text-align: left; }
td.wide { min-width: 16em; }
.scroll { overflow-x: auto; }
.note { color: #666; font-size: 0.9em; }
figure { display: inline-block; margin: 0.5em 1em 1em 0; }
figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #444; }
"""


def _h(text: str) -> str:
    return html.escape(text, quote=True)


def _code(text: str) -> str:
    """Escaped text with Markdown's `code` spans as <code> elements."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", _h(text))


def _html(views: Sequence[TrackView]) -> str:
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{_h(TITLE)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_h(TITLE)}</h1>",
        "<p>"
        + _code(_INTRO).format(
            schema=f'<a href="{_SCHEMA_DOC}"><code>docs/results.md</code></a>'
        )
        + "</p>",
    ]
    if not views:
        out.append(f'<p class="note">{_code(_EMPTY)}</p>')
    else:
        items = "".join(
            f'<li><a href="#track-{_h(v.track.name)}">{_h(v.track.name)}</a></li>'
            for v in views
        )
        out.append(f"<nav><ul>{items}</ul></nav>")
    numeric = {"#", "mean accuracy", "vs Adam (mean)", "meta-params"}
    styles = {"meta-trained on": "nowrap", "meta-training": "wide", "meta-test": "wide"}
    for view in views:
        name = view.track.name
        columns = _columns(view)
        numeric_columns = numeric | set(view.tasks)
        out += [
            f'<section id="track-{_h(name)}">',
            f"<h2>Track {_h(name)}</h2>",
            f"<p>Meta-test tasks: {_h(', '.join(view.track.tasks))}.</p>",
            '<div class="scroll">',
            f'<table class="ranking" data-track="{_h(name)}">',
            "<thead><tr>" + "".join(f"<th>{_h(c)}</th>" for c in columns) + "</tr>",
            "</thead>",
            "<tbody>",
        ]
        for row in view.rows:
            cells = _cells(row, view)
            tds = []
            for column in columns[:-1]:
                style = "num" if column in numeric_columns else styles.get(column)
                css = f' class="{style}"' if style else ""
                text = "<br>".join(_h(line) for line in cells[column])
                tds.append(f"<td{css}>{text}</td>")
            href = f"{RESULTS_DIR}/{quote(row.entry.file)}"
            tds.append(f'<td><a href="{_h(href)}">{_h(row.entry.file)}</a></td>')
            out.append("<tr>" + "".join(tds) + "</tr>")
        out += ["</tbody>", "</table>", "</div>"]
        if view.heat_maps:
            out.append("<h3>Meta-training suite by meta-test dataset</h3>")
            out += [_figure(plot) for plot in view.heat_maps]
        out.append("<h3>Accuracy curves</h3>")
        out += [_figure(plot) for plot in view.curves]
        out.append("</section>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _figure(plot: Plot) -> str:
    return (
        f'<figure><img src="{_h(quote(plot.path))}" alt="{_h(plot.caption)}">'
        f"<figcaption>{_h(plot.caption)}</figcaption></figure>"
    )


def render_leaderboard(folder: Path) -> dict[str, bytes]:
    """Every file the leaderboard of `folder` consists of: relative path -> content."""
    entries = load_entries(folder)
    views = []
    for track in tracks().values():
        chosen = [e for e in entries if e.result["track"] == track.name]
        if chosen:
            views.append(_track_view(track, chosen))
    files = {
        "README.md": _markdown(views).encode(),
        "index.html": _html(views).encode(),
    }
    for view in views:
        for plot in view.curves + view.heat_maps:
            files[plot.path] = plot.svg
    return files


def _stale_plots(folder: Path, files: dict[str, bytes]) -> list[str]:
    plots = Path(folder) / PLOTS_DIR
    existing = sorted(f"{PLOTS_DIR}/{p.name}" for p in plots.glob("*.svg"))
    return [path for path in existing if path not in files]


def build_leaderboard(folder: Path) -> list[Path]:
    """Write the pages and plots of `folder` from its result files; remove old plots.

    Returns:
        The files written.
    """
    from vsml_bench.training.checkpoint import atomic_write_bytes

    folder = Path(folder)
    files = render_leaderboard(folder)
    for path in _stale_plots(folder, files):
        (folder / path).unlink()
    written = []
    for path, content in files.items():
        atomic_write_bytes(folder / path, content)
        # The temporary file was private (0600); pages are for everyone to read.
        (folder / path).chmod(0o644)
        written.append(folder / path)
    logger.info("leaderboard of %s written (%d files)", folder, len(written))
    return written


def check_leaderboard(folder: Path) -> list[str]:
    """What differs between the committed pages of `folder` and a fresh build.

    Returns:
        One line per difference (a missing, stale or out-of-date file); empty if the
        pages are up to date.
    """
    folder = Path(folder)
    files = render_leaderboard(folder)
    differences = []
    for path, content in files.items():
        target = folder / path
        if not target.is_file():
            differences.append(f"{path} is missing")
        elif str(path).startswith("plots") and str(path).endswith(".svg"):
            # Plot bytes depend on the matplotlib version; the data a plot shows is
            # also in the pages, which are compared byte for byte.
            continue
        elif target.read_bytes() != content:
            differences.append(f"{path} is out of date")
    for path in _stale_plots(folder, files):
        differences.append(f"{path} is stale: no result file produces it")
    return differences
