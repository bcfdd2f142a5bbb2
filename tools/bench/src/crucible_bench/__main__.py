"""`python -m crucible_bench` (`make bench`): run the suite under load, write JSON and Markdown."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
from pathlib import Path

from crucible_bench import report, session

DEFAULT_SECONDS = 10.0
DEFAULT_RATE = 100.0


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m crucible_bench", description=__doc__)
    parser.add_argument(
        "--seconds",
        type=float,
        default=float(os.environ.get("BENCH_SECONDS") or DEFAULT_SECONDS),
        help="length of each phase (default: $BENCH_SECONDS, else %(default)s)",
    )
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="submits/s in phase 3")
    parser.add_argument("--bench-dir", type=Path, default=Path(".bench"))
    parser.add_argument(
        "--update-doc",
        nargs="?",
        const=Path("docs/benchmarks.md"),
        type=Path,
        help="also put the tables into this document's generated section",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the busiest phases")
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="storage on a private PostgreSQL cluster under the bench dir instead of SQLite",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=session.PHASE_GROUPS,
        help="run only this group of phases (repeatable): paths (1, 2, 4), submit (3), "
        "accept (5), listeners (6); all by default",
    )
    return parser.parse_args(argv)


def _command(argv: list[str]) -> str:
    """How this run was started, as a reader of the report would type it."""
    if os.environ.get("MAKELEVEL"):
        args = f" BENCH_ARGS={shlex.quote(' '.join(argv))}" if argv else ""
        return f"BENCH_SECONDS={os.environ.get('BENCH_SECONDS', '')} make bench{args}"
    return shlex.join(["python", "-m", "crucible_bench", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _arguments(argv)
    # Ctrl-C (even when started with SIGINT ignored, as background jobs are) and SIGTERM unwind
    # through the suite's `finally`, which stops every process it started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    args.bench_dir.mkdir(parents=True, exist_ok=True)
    try:
        results = session.run(
            root=Path.cwd(),
            bench_dir=args.bench_dir,
            seconds=args.seconds,
            rate=args.rate,
            profile=args.profile,
            command=_command(argv),
            use_postgres=args.postgres,
            only=args.only,
        )
    except KeyboardInterrupt:
        print("interrupted: the suite has been stopped; nothing was written", file=sys.stderr)
        return 130
    (args.bench_dir / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    rendered = report.render(results)
    (args.bench_dir / "latest.md").write_text(rendered)
    if args.update_doc:
        args.update_doc.write_text(report.replace_section(args.update_doc.read_text(), rendered))
    print(rendered)
    print(f"raw figures: {args.bench_dir / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
