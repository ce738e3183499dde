"""`streamwatch bench ingest | model | levers | pipeline | gating`: argument parsing and the commands."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamwatch.learning.finetune.settings import LoraSettings
from streamwatch.logs import setup_logging
from streamwatch.tools.bench import arguments
from streamwatch.tools.bench.chain import CHAIN


def _logging(args: argparse.Namespace) -> None:
    """Warnings from everything, progress from the benchmark itself."""
    setup_logging(args.log_level or "WARNING")
    logging.getLogger("streamwatch.tools.bench").setLevel(logging.INFO)


def _report(run_bench: Callable[..., list[Path]], config: object) -> int:
    """Run a benchmark, printing its progress lines and the report files it wrote."""
    for path in run_bench(config, progress=lambda line: print(line, flush=True)):
        print(f"wrote {path}")
    return 0


def cmd_bench_ingest(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.ingest import IngestBenchConfig, run_bench

    _logging(args)
    config = IngestBenchConfig(
        cameras=args.cameras,
        modes=args.modes,
        seconds=args.seconds,
        warmup_s=args.warmup,
        sample_interval_s=args.sample_interval,
        width=args.width,
        height=args.height,
        fps=args.fps,
        gop=args.gop,
        bit_rate=args.bitrate,
        out_dir=Path(args.out),
        name=args.name,
    )
    return _report(run_bench, config)


def cmd_bench_model(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.model import ModelBenchConfig, run_bench

    _logging(args)
    if args.replot:
        from streamwatch.tools.bench.model_report import replot

        print(f"wrote {replot(Path(args.replot))}")
        return 0
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    config = ModelBenchConfig(
        size=args.size,
        resolutions=args.resolutions,
        batches=args.batches,
        reps=args.reps,
        naive_frames=args.naive_frames,
        device=args.device,
        peak_flops=peak,
        compile=args.compile,
        out_dir=Path(args.out),
        name=args.name,
    )
    return _report(run_bench, config)


def cmd_bench_levers(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.levers import LeversBenchConfig, run_bench

    _logging(args)
    ((width, height),) = args.frame
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    config = LeversBenchConfig(
        size=args.size,
        width=width,
        height=height,
        frames=args.frames,
        reps=args.reps,
        steps=args.steps,
        device=args.device,
        peak_flops=peak,
        out_dir=Path(args.out),
        name=args.name,
    )
    return _report(run_bench, config)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.pipeline import PipelineBenchConfig, run_bench

    _logging(args)
    ((width, height),) = args.frame
    config = PipelineBenchConfig(
        size=args.size,
        width=width,
        height=height,
        max_image_sides=args.model_sides,
        cameras=args.cameras,
        gated_cameras=args.gated_cameras,
        interval_s=args.interval,
        seconds=args.seconds,
        warmup_s=args.warmup,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        workers=args.workers,
        slo_s=args.slo,
        activity=args.activity,
        gating={"off": (False,), "on": (True,), "both": (False, True)}[args.gating],
        device=args.device,
        compile=args.compile,
        out_dir=Path(args.out),
        name=args.name,
    )
    return _report(run_bench, config)


def cmd_bench_gating(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.gating import GatingBenchConfig, run_bench

    _logging(args)
    config = GatingBenchConfig(
        config=Path(args.config), out_dir=Path(args.out), name=args.name, degrade=tuple(args.degrade), seed=args.seed
    )
    return _report(run_bench, config)


def cmd_bench_learning_loop(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.learning_loop import LoopConfig, run_bench
    from streamwatch.tools.bench.loop_site import LabelSettings

    _logging(args)
    config = LoopConfig(
        train_good=args.train_good,
        train_bridged=args.train_bridged,
        held_good=args.held_good,
        held_bridged=args.held_bridged,
        interval_s=args.interval,
        board_frames=args.board_frames,
        steps=args.steps,
        seeds=tuple(args.seeds),
        unjudged_seed=args.unjudged_seed,
        labels=LabelSettings(every_s=args.label_every, sample_no=args.sample_no, sample_yes=args.sample_yes),
        repo=Path(args.repo),
        out_dir=Path(args.out),
        name=args.name,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        device=args.device,
        parallel=args.parallel,
    )
    return _report(run_bench, config)


def cmd_bench_gating_footage(args: argparse.Namespace) -> int:
    from streamwatch.errors import DataFileError
    from streamwatch.tools.bench.gating_footage import FootageBenchConfig, FootageError, run_bench

    _logging(args)
    defaults = FootageBenchConfig()
    config = FootageBenchConfig(
        labels=[Path(p) for p in args.labels] if args.labels else defaults.labels,
        area=defaults.area if args.area is None else args.area,
        max_reuse_s=defaults.max_reuse_s if args.max_reuse_s is None else args.max_reuse_s,
        degrade=args.degrade,
        out_dir=Path(args.out),
        name=args.name,
    )
    try:
        return _report(run_bench, config)
    except (FootageError, DataFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def cmd_bench_recipes(args: argparse.Namespace) -> int:
    from streamwatch.tools.bench.recipes import RecipesConfig, run_bench

    _logging(args)
    config = RecipesConfig(
        seeds=tuple(args.seeds),
        train_good=args.train_good,
        train_bridged=args.train_bridged,
        held_good=args.held_good,
        held_bridged=args.held_bridged,
        device=args.device,
        parallel=args.parallel,
        repo=Path(args.repo),
        out_dir=Path(args.out),
        name=args.name,
    )
    return _report(run_bench, config)


def _outputs(parser: argparse.ArgumentParser, name: str) -> None:
    """Options every benchmark has: where the report goes and how much it logs."""
    parser.add_argument("--out", default="bench", help="report folder")
    parser.add_argument("--name", default=name, help="report file name (without extension)")
    parser.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def _model_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", choices=["glm46v-flash", "tiny"], default="glm46v-flash")
    parser.add_argument("--device", default="auto")


def add_bench_parser(sub: Any) -> None:
    bench = sub.add_parser("bench", help="benchmarks; reports go to bench/")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    ingest = bench_sub.add_parser("ingest", help="N simulated 1080p RTSP cameras: CPU, decode time, sample age")
    ingest.add_argument("--cameras", type=arguments.int_list, default=[4, 16, 32], help="camera counts, e.g. 4,16,32")
    ingest.add_argument("--modes", type=arguments.modes, default=["keyframes", "all"], help="decode modes to compare")
    ingest.add_argument("--seconds", type=float, default=30.0, help="measurement window per run")
    ingest.add_argument("--warmup", type=float, default=5.0)
    ingest.add_argument("--sample-interval", type=float, default=2.0)
    ingest.add_argument("--width", type=int, default=1920)
    ingest.add_argument("--height", type=int, default=1080)
    ingest.add_argument("--fps", type=int, default=25)
    ingest.add_argument("--gop", type=int, default=25, help="keyframe interval in frames")
    ingest.add_argument("--bitrate", type=int, default=4_000_000, help="bits per second")
    _outputs(ingest, "ingest")
    ingest.set_defaults(func=cmd_bench_ingest)
    bench_model = bench_sub.add_parser("model", help="naive generate vs batched yes/no on a GLM-4.6V-sized model")
    _model_choice(bench_model)
    bench_model.add_argument("--resolutions", type=arguments.resolutions, default=[(1280, 720), (640, 360)])
    bench_model.add_argument("--batches", type=arguments.int_list, default=[1, 2, 4, 8, 16, 32, 64])
    bench_model.add_argument("--reps", type=int, default=3)
    bench_model.add_argument("--naive-frames", type=int, default=8)
    bench_model.add_argument("--peak-tflops", type=float, help="bf16 dense peak for MFU (known GPUs: automatic)")
    _outputs(bench_model, "model")
    bench_model.add_argument("--replot", metavar="JSON", help="only draw the plot of a saved report")
    bench_model.add_argument("--compile", action="store_true", help="torch.compile the vision blocks and layers")
    bench_model.set_defaults(func=cmd_bench_model)
    levers = bench_sub.add_parser("levers", help="what each GPU lever is worth, step by step, on one batch")
    _model_choice(levers)
    levers.add_argument("--frame", type=arguments.resolutions, default=[(1280, 720)], help="frame size")
    levers.add_argument("--frames", type=int, default=8, help="frames per batch")
    levers.add_argument("--reps", type=int, default=3)
    levers.add_argument(
        "--steps", type=arguments.steps, default=list(CHAIN), help=f"chain steps (default {','.join(CHAIN)})"
    )
    levers.add_argument("--peak-tflops", type=float, help="bf16 dense peak for MFU (known GPUs: automatic)")
    _outputs(levers, "levers")
    levers.set_defaults(func=cmd_bench_levers)
    pipeline = bench_sub.add_parser(
        "pipeline", help="how many cameras (3 rules, 1 sample / 2 s) fit the latency target"
    )
    _model_choice(pipeline)
    pipeline.add_argument("--frame", type=arguments.resolutions, default=[(1280, 720)], help="camera frame size")
    pipeline.add_argument(
        "--model-sides", type=arguments.int_list, default=[640, 1280], help="model.max_image_side values"
    )
    pipeline.add_argument("--cameras", type=arguments.int_list, default=[8, 16, 24, 32, 48, 64, 80, 96])
    pipeline.add_argument(
        "--gated-cameras", type=arguments.int_list, help="camera counts for the runs with the gate (default: --cameras)"
    )
    pipeline.add_argument("--interval", type=float, default=2.0)
    pipeline.add_argument("--seconds", type=float, default=20.0)
    pipeline.add_argument("--warmup", type=float, default=4.0)
    pipeline.add_argument("--max-batch", type=int, default=192)
    pipeline.add_argument("--max-wait-ms", type=int, default=50)
    pipeline.add_argument("--workers", type=int, default=2, help="queue workers (1: no CPU/GPU overlap)")
    pipeline.add_argument("--slo", type=float, default=1.5, help="p95 sample -> decision target, seconds")
    pipeline.add_argument("--compile", action="store_true", help="torch.compile the vision blocks and layers")
    pipeline.add_argument("--activity", type=float, default=1.0, help="chance a camera's picture changed (0..1)")
    pipeline.add_argument("--gating", choices=["off", "on", "both"], default="off", help="the change gate")
    _outputs(pipeline, "pipeline")
    pipeline.set_defaults(func=cmd_bench_pipeline)
    gating = bench_sub.add_parser("gating", help="change gating on a config's cameras: model passes, same alerts")
    gating.add_argument("-c", "--config", default="config.toml", help="the cameras, rules and model to replay")
    gating.add_argument(
        "--degrade",
        type=arguments.degradations,
        default=[],
        help="also replay through camera degradations: night,jitter,...",
    )
    gating.add_argument("--seed", type=int, default=0, help="the degradations' seed")
    _outputs(gating, "gating-demo")
    gating.set_defaults(func=cmd_bench_gating)
    footage = bench_sub.add_parser(
        "gating-footage", help="the change gate on labelled real footage: passes saved, labelled changes missed"
    )
    footage.add_argument("labels", nargs="*", help="labels files (default: footage/labels/*.toml)")
    footage.add_argument("--area", type=float, help="change_area, source pixels (default: a camera's default)")
    footage.add_argument("--max-reuse-s", type=float, help="max_reuse_s (default: a camera's default)")
    footage.add_argument(
        "--degrade",
        type=arguments.degradations,
        default=[],
        help="also through these camera degradations: noise,night,...",
    )
    _outputs(footage, "gating-footage")
    footage.set_defaults(func=cmd_bench_gating_footage)
    loop = bench_sub.add_parser(
        "learning-loop", help="demo model: operator reviews -> eval -> threshold -> fine-tune -> hot swap, held out"
    )
    loop.add_argument("--train-good", type=arguments.positive, default=300, help="good boards the operator reviews")
    loop.add_argument(
        "--train-bridged", type=arguments.positive, default=150, help="bridged boards the operator reviews"
    )
    loop.add_argument(
        "--held-good", type=arguments.positive, default=400, help="good boards held out (before and after)"
    )
    loop.add_argument("--held-bridged", type=arguments.positive, default=200, help="bridged boards held out")
    loop.add_argument(
        "--interval", type=arguments.sample_interval, default=0.15, help="the camera's sample interval, seconds"
    )
    loop.add_argument("--board-frames", type=arguments.positive, default=2, help="images each board is shown for")
    loop.add_argument("--steps", type=arguments.positive, default=LoraSettings().steps, help="fine-tuning steps")
    loop.add_argument("--seeds", type=arguments.seeds, default=[0], help="seeds, one run each: 0,1,2,3,4")
    loop.add_argument(
        "--unjudged-seed", type=int, help="also a run with foreign-object live and never labelled: the gate refuses"
    )
    loop.add_argument("--label-every", type=float, default=0.0, help="[labels] every_s of the site")
    loop.add_argument("--sample-no", type=float, default=0.3, help="[labels] sample_no of the site")
    loop.add_argument("--sample-yes", type=float, default=0.05, help="[labels] sample_yes of the site")
    loop.add_argument("--repo", default=".", help="the checkout with models/demo-glm4v and rules/")
    loop.add_argument("--work-dir", help="keep the site here (default: a temporary folder)")
    loop.add_argument("--device", default="cpu", help="the service's and the fine-tune's device: cpu, cuda, auto")
    loop.add_argument(
        "--parallel", type=arguments.positive, default=1, help="seeds run at once, each with its own service"
    )
    _outputs(loop, "learning-loop")
    loop.set_defaults(func=cmd_bench_learning_loop)
    recipes = bench_sub.add_parser(
        "finetune-recipes", help="demo model: fine-tuning recipes trained on the same labels, held-out boards, per seed"
    )
    recipes.add_argument("--seeds", type=arguments.seeds, default=[0, 1, 2, 3, 4], help="seeds, one run each")
    recipes.add_argument("--train-good", type=arguments.positive, default=300, help="good training boards")
    recipes.add_argument("--train-bridged", type=arguments.positive, default=150, help="bridged training boards")
    recipes.add_argument("--held-good", type=arguments.positive, default=400, help="good held-out boards")
    recipes.add_argument("--held-bridged", type=arguments.positive, default=200, help="bridged held-out boards")
    recipes.add_argument("--device", default="auto", help="cpu, cuda, auto")
    recipes.add_argument(
        "--parallel", type=arguments.positive, default=1, help="seeds at once, each in its own process"
    )
    recipes.add_argument("--repo", default=".", help="the checkout with models/demo-glm4v and rules/")
    _outputs(recipes, "finetune-recipes")
    recipes.set_defaults(func=cmd_bench_recipes)
