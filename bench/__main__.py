"""`python -m bench [--only parse,throughput,…] [flags]`: run benchmarks, print one table.

Each benchmark writes `bench/results/<name>.json`; a benchmark that fails is reported
and the others still run (the exit status is then 1). The benchmarks that need Kafka
(`NEEDS_BROKER`) are not started without one: one line on stderr says what to start,
exit status 1. `--help` lists every flag.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import traceback
from types import ModuleType

from bench import buffer, hotpath, latency, parse, scale, throughput
from bench.harness import DEFAULT_BROKERS, broker_problem
from bench.machine import busy_cores, load_average, machine_info, wait_for_quiet
from bench.report import Figure, render_table, write_result
from twitch_ingestion.sources.irc.compiled import extension_available

BENCHMARKS: dict[str, ModuleType] = {
    module.NAME: module for module in (parse, buffer, hotpath, throughput, latency, scale)
}
BUFFER_MODES = ("disk", "memory")


def _names(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
        )
    return names


def _modes(value: str) -> list[str]:
    modes = [mode.strip() for mode in value.split(",") if mode.strip()]
    if not modes or any(mode not in BUFFER_MODES for mode in modes):
        raise argparse.ArgumentTypeError(f"buffer modes are {', '.join(BUFFER_MODES)}")
    return modes


def _hot_paths(value: str) -> list[str]:
    paths = [path.strip() for path in value.split(",") if path.strip()]
    unknown = [path for path in paths if path not in ("compiled", "python")]
    if not paths or unknown:
        raise argparse.ArgumentTypeError("hot paths are compiled, python")
    if "compiled" in paths and not extension_available():
        raise argparse.ArgumentTypeError(
            "the compiled extension is not built (make install with cargo): use --hot-paths python"
        )
    return paths


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of twitch-ingestion (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--only",
        type=_names,
        default=",".join(BENCHMARKS),
        help="comma-separated subset of the benchmarks",
    )
    parser.add_argument(
        "--modes", type=_modes, default=",".join(BUFFER_MODES), help="BUFFER_MODE values to run"
    )
    parser.add_argument(
        "--hot-paths",
        type=_hot_paths,
        default="compiled,python" if extension_available() else "python",
        help="HOT_PATH values to compare (hotpath, throughput), interleaved A/B in one sitting",
    )
    parser.add_argument(
        "--brokers",
        default=os.environ.get("KAFKA_BROKERS") or DEFAULT_BROKERS,
        help="Kafka bootstrap servers (KAFKA_BROKERS if set, else the local `make broker`)",
    )
    parser.add_argument(
        "--broker-timeout-s",
        type=float,
        default=10.0,
        help="how long the broker has to answer before the benchmarks that need it give up",
    )
    parser.add_argument(
        "--quiet-timeout-s",
        type=float,
        default=0.0,
        help="before each benchmark, wait up to this long for the machine to be quiet",
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="'quiet' = other processes keep fewer CPUs than this busy",
    )
    for module in BENCHMARKS.values():
        module.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if any(getattr(BENCHMARKS[name], "NEEDS_BROKER", False) for name in args.only):
        problem = broker_problem(args.brokers, args.broker_timeout_s)
        if problem is not None:
            print(f"python -m bench: {problem}", file=sys.stderr)
            return 1
    command = shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    machine = machine_info()
    print(
        f"{machine['nproc']} × {machine['cpu_model']}, {machine['mem_total_gib']} GiB, "
        f"Python {machine['python']}, git {machine['git']}; load {load_average()}",
        flush=True,
    )
    figures: list[Figure] = []
    failed: list[str] = []
    for name in args.only:
        if args.quiet_timeout_s > 0:
            busy = wait_for_quiet(args.quiet_cores, args.quiet_timeout_s)
        else:
            busy = busy_cores()
        print(f"\n== {name} (load {load_average()}, {busy:.2f} cores busy before)", flush=True)
        started = time.monotonic()
        try:
            result = BENCHMARKS[name].run(args)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        result.details["busy_cores_before"] = round(busy, 2)
        path = write_result(result, command)
        print(render_table(result.figures), flush=True)
        print(f"({time.monotonic() - started:.0f} s; {path})", flush=True)
        figures.extend(result.figures)
    print(f"\n== summary: {command}\n")
    print(render_table(figures))
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
