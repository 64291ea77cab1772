"""The `vsml-bench` command line.

Subcommands: `tasks` (every task and suite), `agents` (every learner), `bench` (learner
throughput against a matrix-multiply calibration), `leaderboard` (the pages built from
result files). Bad input ends with a one-line message on stderr and exit status 2,
never a traceback.
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
    if args.what == "episodes":
        from vsml_bench.bench_pipeline import bench_episodes

        result = bench_episodes(steps=min(args.steps, 500) if args.steps else 500)
    elif args.what == "generation":
        from vsml_bench.bench_pipeline import bench_generation

        population = args.population or 64
        overrides = [f"agent={args.agent}", f"es.population={population}"]
        result = bench_generation(overrides + list(args.option))
    else:
        from vsml_bench.bench import run_benchmark

        result = run_benchmark(
            args.agent,
            _parse_shape(args.shape),
            steps=args.steps,
            population=args.population or 1,
            options=_parse_options(args.option),
            together=args.together,
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


def cmd_leaderboard(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from vsml_bench.leaderboard import build_leaderboard, check_leaderboard

    folder = Path(args.folder)
    if args.check:
        differences = check_leaderboard(folder)
        for line in differences:
            console.print(f"{folder}: {line}", markup=False, highlight=False)
        if differences:
            console.print("run `vsml-bench leaderboard` to rebuild the pages")
        return 1 if differences else 0
    written = build_leaderboard(folder)
    console.print(f"leaderboard written to {folder} ({len(written)} files)")
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


def _results_table(result: dict, console: Console) -> None:
    learner = result["learner"]["name"]
    table = Table(
        title=f"{learner} on {result['track']} ({result['protocol']['episodes']}"
        f" episodes of {result['protocol']['steps']} steps)"
    )
    for column in ("task", "online acc", "last 10% acc", "cross-entropy", "vs adam"):
        table.add_column(column)
    for entry in result["tasks"]:
        m = entry["metrics"]
        vs = m["vs_adam"]
        table.add_row(
            entry["task"],
            f"{m['accuracy']:.3f} ± {m['accuracy_ci95']:.3f}",
            f"{m['accuracy_last']:.3f} ± {m['accuracy_last_ci95']:.3f}",
            f"{m['cross_entropy']:.3f} ± {m['cross_entropy_ci95']:.3f}",
            "-" if vs is None else f"{vs['accuracy']:+.3f} ± {vs['accuracy_ci95']:.3f}",
        )
    console.print(table)


def _meta_test_tasks(args: argparse.Namespace, suite) -> list:
    from vsml_bench.harness import sized_task, with_length

    tasks = [sized_task(args.task, suite)] if args.task else list(suite.meta_test)
    return with_length(tasks, args.steps)


def cmd_eval(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from vsml_bench.harness import (
        Training,
        checkpoint_learner,
        load_meta_params,
        report,
    )
    from vsml_bench.tasks.suites import get_suite

    options = _parse_options(args.option)
    agent = args.agent
    if args.checkpoint and agent is None:
        agent, saved = checkpoint_learner(args.checkpoint)
        options = {**saved, **options}
    if agent is None:
        raise UserError("give --agent NAME, or --checkpoint PATH of a trained learner")
    suite = get_suite(args.suite)
    tasks = _meta_test_tasks(args, suite)

    from vsml_bench.registry import make_learner

    learner = make_learner(agent, tasks[0].spec, **options)
    meta_params, training = None, Training()
    if args.checkpoint:
        meta_params, metadata = load_meta_params(args.checkpoint, learner)
        training = _training_from_metadata(metadata, str(args.checkpoint))
    elif learner.num_meta_params() > 0:
        console.print(
            f"note: {agent} has meta-parameters but no --checkpoint was given: "
            "testing its untrained initialisation",
            highlight=False,
        )
    out = Path(args.out) if args.out else _new_run_dir(agent, f"eval-{suite.name}")
    result, _ = report(
        agent,
        options,
        meta_params,
        suite,
        tasks,
        args.episodes,
        args.seed,
        out,
        training,
    )
    _results_table(result, console)
    console.print(f"results in {out}", highlight=False)
    return 0


def _training_from_metadata(metadata: dict, source: str):
    """The meta-training record a meta_params file carries (see training/run.py)."""
    from vsml_bench.harness import Training

    return Training(
        method=metadata.get("method", "none"),
        episodes=int(metadata.get("episodes", 0)),
        steps=int(metadata.get("steps", 0)),
        wall_time_s=float(metadata.get("seconds", 0.0)),
        config=metadata.get("config"),
        from_checkpoint=source,
    )


def _user_sets(files: list[str], overrides: list[str], key: str) -> bool:
    """Whether the user's config files or overrides set `key` themselves."""
    from omegaconf import OmegaConf

    merged = OmegaConf.create()
    for path in files:
        merged = OmegaConf.merge(merged, OmegaConf.load(path))
    merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
    return OmegaConf.select(merged, key, default=None) is not None


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from pathlib import Path

    from vsml_bench.config import load_config, to_dict
    from vsml_bench.harness import Training, pretrained_path, report
    from vsml_bench.registry import make_learner
    from vsml_bench.tasks.suites import get_suite
    from vsml_bench.training.run import train

    overrides = list(args.overrides)
    if args.agent:
        overrides.insert(0, f"agent={args.agent}")
    if args.suite:
        overrides.insert(0, f"suite={args.suite}")
    config = load_config(args.config, overrides)
    suite = get_suite(config.suite)
    tasks = _meta_test_tasks(args, suite)
    learner = make_learner(
        config.agent, suite.meta_train[0].spec, **config.agent_options
    )
    out = Path(args.out) if args.out else _new_run_dir(config.agent, suite.name)

    shipped = pretrained_path() if config.agent == "vsml" else None
    use_shipped = (
        shipped is not None
        and not args.from_scratch
        and not _user_sets(args.config, overrides, "init_from")
        and not _user_sets(args.config, overrides, "agent_options")
    )
    if use_shipped:
        config.init_from = str(shipped)
        if not _user_sets(args.config, overrides, "generations"):
            config.generations = 0

    meta_params, training = None, Training()
    if learner.num_meta_params() == 0:
        console.print(f"{config.agent} has no meta-parameters: meta-testing only")
    elif config.generations == 0 and config.init_from:
        from vsml_bench.harness import load_meta_params

        meta_params, metadata = load_meta_params(config.init_from, learner)
        training = _training_from_metadata(metadata, config.init_from)
        if use_shipped:
            training.from_checkpoint = f"vsml_bench/pretrained/{shipped.name}"
        console.print(
            f"meta-parameters from {config.init_from} (no further meta-training)",
            highlight=False,
        )
    else:
        with _Progress(config.generations, 0, console, config.log.progress) as bar:
            trained = train(config, out / "meta-train", callback=bar)
        meta_params = trained.meta_params
        last = trained.last_metrics
        training = Training(
            method=config.method,
            episodes=int(last["episodes"]),
            steps=int(last["steps"]),
            wall_time_s=float(last["seconds"]),
            config=to_dict(config),
            from_checkpoint=config.init_from,
        )

    console.print(
        f"meta-testing on {', '.join(t.dataset for t in tasks)} with online "
        "adam on identical streams",
        highlight=False,
    )
    result, _ = report(
        config.agent,
        dict(config.agent_options),
        meta_params,
        suite,
        tasks,
        config.eval.episodes,
        config.eval.seed,
        out,
        training,
    )
    if meta_params is not None:
        from vsml_bench.training.checkpoint import save_checkpoint

        save_checkpoint(
            out / "meta_params.safetensors",
            meta_params,
            {
                "agent": config.agent,
                "agent_options": dict(config.agent_options),
                "suite": suite.name,
            },
        )
    _results_table(result, console)
    console.print(
        f"results.json, curves.png and meta-parameters in {out}", highlight=False
    )
    return 0


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
    p.add_argument(
        "--population",
        type=int,
        help="episodes run together (default 1; 64 for --what generation)",
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a learner option (repeatable)",
    )
    p.add_argument(
        "--together",
        type=int,
        default=0,
        help="population members run at once under vmap (0: the device's default)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--what",
        choices=("learner", "episodes", "generation"),
        default="learner",
        help="learner throughput (default); episode drawing against one VSML "
        "episode; or the parts of an ES generation (--option takes config "
        "overrides then)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "run", help="meta-train (where needed), meta-test, print and save results"
    )
    p.add_argument("--agent", help="learner name or module:attribute (default vsml)")
    p.add_argument("--task", help="meta-test task (default: the suite's meta-test)")
    p.add_argument(
        "--suite", help="suite to meta-train on (default randproj-mnist-cpu)"
    )
    p.add_argument("--config", action="append", default=[], metavar="FILE")
    p.add_argument("--steps", type=int, help="meta-test episode length")
    p.add_argument("--out", help="run folder (default: a new folder under runs/)")
    p.add_argument(
        "--from-scratch",
        action="store_true",
        help="do not start VSML from the shipped pretrained learner",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("eval", help="meta-test a learner on a task or a suite")
    p.add_argument("--agent", help="learner name or module:attribute")
    p.add_argument("--checkpoint", help="run folder or meta_params.safetensors")
    p.add_argument("--task", help="one task (default: the suite's meta-test tasks)")
    p.add_argument(
        "--suite",
        default="randproj-mnist-cpu",
        help="suite that sizes the tasks and names the track",
    )
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--steps", type=int, help="episode length (default: the suite's)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", help="folder for results.json and curves.png")
    p.set_defaults(func=cmd_eval)

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

    p = sub.add_parser("leaderboard", help="build the leaderboard pages from results")
    p.add_argument("folder", nargs="?", default="leaderboard", help="its folder")
    p.add_argument(
        "--check", action="store_true", help="only list pages that are out of date"
    )
    p.set_defaults(func=cmd_leaderboard)
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
