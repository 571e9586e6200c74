"""`crawler check JOB.yaml`: validate a job without crawling and print the resolved config."""

from __future__ import annotations

import argparse
import sys

import yaml

from crawler.cli import EXIT_OK, EXIT_USAGE


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check", help="validate a job file and print the resolved config",
                       description="Validate a job file without crawling; print the resolved config.",
                       epilog="example:\n  crawler check job.yaml --set scope.max_pages=10",
                       formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("job")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when the job is valid")
    p.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from crawler._jobfile import JobError, load_job

    try:
        job = load_job(args.job, overrides=args.overrides)
    except JobError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        resolved = job.model_dump(mode="json", by_alias=True)
        print(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), end="")
        print(f"{args.job}: ok", file=sys.stderr)
    return EXIT_OK
