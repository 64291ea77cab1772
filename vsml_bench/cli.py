"""The `vsml-bench` command line.

Subcommands: `tasks` (every task and suite), `agents` (every learner), `bench` (learner
throughput against a matrix-multiply calibration). Bad input ends with a one-line
message on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from rich.console import Console
from rich.table import Table

from vsml_bench.errors import UserError


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(p) for p in text.lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise UserError(
            f"--shape {text!r}: expected sizes joined by 'x', inputs first and classes "
            "last, e.g. 784x10 or 784x32x10"
        )
    return shape


def _parse_options(items: list[str]) -> dict:
    """`key=value` pairs; values read as YAML (1, 0.5, true, [8, 8])."""
    import yaml

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"option {item!r}: expected key=value")
        try:
            options[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise UserError(f"option {item!r}: cannot read the value ({e})") from e
    return options


def cmd_tasks(args: argparse.Namespace, console: Console) -> int:
    from vsml_bench.datasets import dataset_info
    from vsml_bench.tasks.catalog import TASKS, make_task
    from vsml_bench.tasks.suites import suites

    table = Table(title="Tasks", show_lines=False)
    for column in ("task", "gymnasium id", "input", "classes", "T", "source"):
        table.add_column(column)
    for name, entry in TASKS.items():
        task = make_task(name)
        info = dataset_info(task.dataset)
        table.add_row(
            name,
            entry.gym_id,
            "x".join(map(str, task.obs_shape)),
            str(task.num_outputs),
            str(task.episode_length),
            info.source + ("" if info.bundled else " (download)"),
        )
    console.print(table)

    table = Table(title="Suites")
    for column in ("suite", "track", "meta-train", "meta-test", "input", "classes"):
        table.add_column(column)
    for suite in suites().values():
        spec = suite.meta_train[0].spec
        table.add_row(
            suite.name,
            suite.track,
            ", ".join(sorted({t.dataset for t in suite.meta_train})),
            ", ".join(t.dataset for t in suite.meta_test),
            "x".join(map(str, spec.input_shape)),
            str(spec.num_classes),
        )
    console.print(table)
    return 0


def cmd_agents(args: argparse.Namespace, console: Console) -> int:
    from vsml_bench.learner import TaskSpec
    from vsml_bench.registry import learner_class, learner_names, make_learner
    from vsml_bench.tasks.catalog import make_task

    spec = make_task(args.task).spec if args.task else TaskSpec((784,), 10)
    table = Table(
        title=f"Learners (meta-parameters for {spec.input_size}->{spec.num_classes})"
    )
    for column in ("learner", "meta-parameters", "description"):
        table.add_column(column)
    for name in learner_names():
        try:
            cls = learner_class(name)
            count = make_learner(name, spec).num_meta_params()
            table.add_row(name, f"{count:,}", cls.description)
        except Exception as e:  # a broken plug-in must not hide the others
            table.add_row(name, "-", f"[red]cannot be built: {e}[/red]")
    console.print(table)
    return 0


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    from vsml_bench.bench import run_benchmark

    result = run_benchmark(
        args.agent,
        _parse_shape(args.shape),
        steps=args.steps,
        population=args.population,
        options=_parse_options(args.option),
    )
    if args.json:
        print(json.dumps(result))
    else:
        table = Table(title="Benchmark")
        table.add_column("field")
        table.add_column("value")
        for key, value in result.items():
            table.add_row(
                key, f"{value:.4g}" if isinstance(value, float) else str(value)
            )
        console.print(table)
    return 0


class _Progress:
    """A rich progress bar fed by the trainer's per-generation callback."""

    def __init__(self, total: int, start: int, console: Console, enabled: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]meta-train"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} gen"),
            TextColumn("{task.fields[rate]} gen/s"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("test acc {task.fields[acc]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task(
            "train", total=total, completed=start, rate="-", loss="-", acc="-"
        )
        self.started = None
        self.first = start

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def __call__(self, metrics: dict) -> None:
        import time

        now = time.perf_counter()
        if self.started is None:
            self.started = (now, metrics["generation"])
        done = metrics["generation"] - self.started[1]
        rate = done / (now - self.started[0]) if done else 0.0
        fields = {"rate": f"{rate:.2f}", "loss": f"{metrics['meta_loss']:.4f}"}
        if "test/accuracy" in metrics:
            fields["acc"] = f"{metrics['test/accuracy']:.3f}"
        self.progress.update(self.task, completed=metrics["generation"], **fields)


def cmd_train(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from vsml_bench.config import load_config
    from vsml_bench.training.run import train

    if args.resume:
        if args.config or args.agent or args.suite:
            raise UserError(
                "--resume continues a run with its saved config; give only key=value "
                "overrides (e.g. generations=200) with it"
            )
        out = Path(args.resume)
        config = None
    else:
        overrides = list(args.overrides)
        if args.agent:
            overrides.insert(0, f"agent={args.agent}")
        if args.suite:
            overrides.insert(0, f"suite={args.suite}")
        config = load_config(args.config, overrides)
        out = Path(args.out) if args.out else _new_run_dir(config.agent, config.suite)
    total = config.generations if config else _saved_generations(out, args.overrides)
    with _Progress(
        total, 0, console, enabled=config is None or config.log.progress
    ) as bar:
        result = train(
            config,
            out,
            resume=bool(args.resume),
            callback=bar,
            overrides=args.overrides if args.resume else (),
        )
    console.print(f"meta-parameters and checkpoints in {result.out}")
    return 0


def _saved_generations(out, overrides) -> int:
    from vsml_bench.config import load_config

    saved = out / "config.yaml"
    if not saved.is_file():
        raise UserError(f"--resume {out}: no config.yaml there; is it a run folder?")
    return load_config([saved], list(overrides)).generations


def _new_run_dir(agent: str, suite: str):
    import time
    from pathlib import Path

    stamp = time.strftime("%Y%m%d-%H%M%S")
    safe_agent = agent.replace(":", "_").replace("/", "_").replace(".", "_")
    base = Path("runs") / f"{stamp}-{safe_agent}-{suite}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vsml-bench",
        description="Learned learning algorithms (VSML and baselines) as a benchmark.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("tasks", help="list every task and suite")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("agents", help="list every learner")
    p.add_argument("--task", help="count meta-parameters for this task's shapes")
    p.set_defaults(func=cmd_agents)

    p = sub.add_parser("bench", help="measure a learner's throughput")
    p.add_argument("--agent", default="vsml")
    p.add_argument("--shape", default="784x10", help="inputs[xhidden...]xclasses")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--population", type=int, default=1)
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a learner option (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("train", help="meta-train a learner on a suite")
    p.add_argument("--agent", help="learner name or module:attribute")
    p.add_argument("--suite", help="suite name (see `vsml-bench tasks`)")
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="FILE",
        help="YAML config file (repeatable; later files win)",
    )
    p.add_argument("--out", help="run folder (default: a new folder under runs/)")
    p.add_argument("--resume", metavar="DIR", help="continue the run in DIR")
    p.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="config overrides, e.g. es.population=128",
    )
    p.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    # Piped output gets a wide table instead of rich's 80-column default.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        return args.func(args, console)
    except UserError as e:
        Console(stderr=True).print(f"error: {e}", markup=False, highlight=False)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
