"""`crawler check JOB.yaml`: validate a job without crawling and print the resolved config as YAML."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from crawler.cli import EXIT_OK, EXIT_USAGE
from crawler.cli.run import NO_ITEMS_WARNING
from crawler.config.secrets import redact_tree

if TYPE_CHECKING:
    from crawler import Job

_EPILOG = """\
examples:
  crawler check job.yaml
  crawler check job.yaml --set scope.max_pages=10 --set rate_limit.per_host=5/s
  crawler check -q configs/*.yaml        (no output when every job is valid)

A bad key, type or value is reported with the key path, the file and line, and what is allowed;
exit code 0 when every job is valid, 2 otherwise.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("check", help="validate a job file and print the resolved config",
                       description="Validate job files without crawling; print the resolved config.",
                       epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("jobs", nargs="+", metavar="job", help="job file(s) (YAML)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a job key, as with crawler run (repeatable)")  # fmt: skip
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when the job is valid")
    p.set_defaults(handler=main)


def check_job(path: str, overrides: list[str]) -> tuple[Job | None, str | None]:
    """(the job, None) when it is valid, (None, the error text) otherwise. Also imports the user stages,
    since a stage that does not import would stop `crawler run` at startup."""
    from crawler.config.job import load_job
    from crawler.config.jobfile import JobError
    from crawler.engine.stages import load_stage
    from crawler.model.errors import StageLoadError

    try:
        job = load_job(path, overrides=overrides)
    except JobError as exc:
        return None, exc.render()
    problems = []
    named = [(f"stages[{i}]", s) for i, s in enumerate(job.stages)]
    named += [(f"routes[{r}].stages[{i}]", s) for r, route in enumerate(job.routes) for i, s in enumerate(route.stages or [])]
    for where, stage in named:
        try:
            load_stage(stage)
        except StageLoadError as exc:
            problems.append(f"{path}: {where}: {exc}")
        except Exception as exc:  # a stage whose constructor fails
            problems.append(f"{path}: {where}: {stage!r} fails to build: {type(exc).__name__}: {exc}")
    return (None, "\n".join(problems)) if problems else (job, None)


def main(args: argparse.Namespace) -> int:
    import yaml  # here, not at module level: `crawler --help` builds every subcommand's parser

    code = EXIT_OK
    for path in args.jobs:
        job, error = check_job(path, args.overrides)
        if job is None:
            print(error, file=sys.stderr)
            code = EXIT_USAGE
            continue
        if not args.quiet:
            # Values from ${VAR} and credentials are shown as *** (crawler.config.secrets).
            resolved = redact_tree(job.model_dump(mode="json", by_alias=True), job.secrets())
            if len(args.jobs) > 1:
                print(f"# {path}")
            print(yaml.safe_dump(resolved, sort_keys=False, allow_unicode=True), end="")
            print(f"{path}: ok", file=sys.stderr)
        # Even with -q: the job runs, but what it extracts goes nowhere.
        if not (job.output.items or job.output.failures or job.output.warc):
            print(f"{path}: warning: {NO_ITEMS_WARNING}", file=sys.stderr)
    return code
