"""Policy-as-code against a running control plane: `kaizen-studio login`, and
`policy push | test --remote | replay | publish` (M15), on `kaizen_studio.client`.

Where to and as whom, first found wins: `--url` / `--api-key`; `KAIZEN_URL` /
`KAIZEN_API_KEY` (what CI sets: an API key whose role may publish); the login saved by
`kaizen-studio login` in `$KAIZEN_HOME/credentials.json` (0600; its access token is
refreshed when it expires, and the new pair saved).

Exit codes, for CI: 0 success; 1 the policy is at fault (invalid documents, failing tests,
a publish refused by its tests or the replay gate, risky replay changes with
`--fail-on-risky`); 2 it could not run (no control plane, not logged in, not allowed, bad
usage). `--format json|junit` prints a machine-readable result on stdout.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from control_plane.schemas.identity import TokenResponse
from control_plane.settings import default_home
from kaizen_studio.client import ApiError, KaizenClient, Unreachable
from policy.bundles.bundle_sync import InsecureControlPlane, check_control_plane_url
from policy.cli import COULD_NOT_RUN, POLICY_FAULT, add_format, print_report, read_sources
from policy.compile.report_formats import render
from policy.documents.parse import parse_policy_source
from policy.documents.policy_set import PolicySet
from policy.errors import PolicyValidationError

if TYPE_CHECKING:
    from policy.cli import Commands

CREDENTIALS = "credentials.json"
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


class CannotRun(Exception):
    """Said on stderr; exit COULD_NOT_RUN."""


# -- registration ----------------------------------------------------------------------------


def register(sub: Commands, policy: Commands) -> None:
    """`login` beside the other commands; push/replay/publish and `test --remote` in `policy`."""
    login = sub.add_parser(
        "login",
        help="log in to a control plane and save the session for the policy commands",
        description="Log in as a user (password, then a TOTP code if your account has MFA) and "
        f"save the session in $KAIZEN_HOME/{CREDENTIALS} (0600). CI should set KAIZEN_URL "
        "and KAIZEN_API_KEY instead.",
    )
    login.add_argument("--url", help="the control plane (default: KAIZEN_URL)")
    login.add_argument("--email", required=True)
    login.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    login.add_argument("--totp", help="the current code from your authenticator app")
    login.add_argument("--organization", type=uuid.UUID, help="which of your organisations")
    login.set_defaults(func=_command(_login))

    push = policy.add_parser(
        "push",
        help="validate the files here, then save them as drafts on the control plane",
        description="Validate PATHs offline (file:line:column on a problem), then create or "
        "update one draft per document on the control plane, all or nothing. Drafts take "
        "effect when published.",
    )
    _add_remote(push, paths="+")
    push.set_defaults(func=_command(_push))

    replay = policy.add_parser(
        "replay",
        help="replay recorded decisions against the drafts and show what would change",
        description="Replay the decisions made in a window against the drafts, waiting for the "
        "result (progress on stderr). Its id is what `policy publish --accept-replay` takes.",
    )
    _add_remote(replay)
    replay.add_argument(
        "--since", default="24h", help="window start: a duration back (30m, 24h, 7d) or a time"
    )
    replay.add_argument("--until", help="window end (default: now)")
    replay.add_argument(
        "--fail-on-risky",
        action="store_true",
        help="exit 1 if any change is risky (allow→deny, allow→approval, deny→allow)",
    )
    replay.set_defaults(func=_command(_replay))

    publish = policy.add_parser(
        "publish",
        help="test, compile and sign the drafts as a new bundle revision",
        description="The control plane runs the drafts' tests (a failure refuses the publish, "
        "exit 1) and, when the organisation requires it, checks for a clean replay.",
    )
    _add_remote(publish)
    publish.add_argument("-m", "--message", default="", help="why (kept with the revision)")
    publish.add_argument(
        "--accept-replay", type=uuid.UUID, help="a completed replay of these drafts to accept"
    )
    publish.set_defaults(func=_command(_publish))


def extend_test(test: argparse.ArgumentParser) -> None:
    """`policy test --remote`: run the control plane's tests (after pushing PATHs, if any)."""
    offline = test.get_default("func")
    test.add_argument(
        "--remote",
        action="store_true",
        help="run the tests on the control plane: PATHs (if any) are pushed as drafts first",
    )
    test.add_argument("--url", help="the control plane (default: KAIZEN_URL or your login)")
    test.add_argument("--api-key", help="default: KAIZEN_API_KEY or your login")
    remote = _command(_test_remote)
    test.set_defaults(func=lambda args: remote(args) if args.remote else offline(args))


def _add_remote(parser: argparse.ArgumentParser, paths: str | None = None) -> None:
    if paths:
        parser.add_argument("paths", nargs=paths, type=Path, metavar="PATH")
    parser.add_argument("--url", help="the control plane (default: KAIZEN_URL or your login)")
    parser.add_argument("--api-key", help="default: KAIZEN_API_KEY or your login")
    add_format(parser)


def _command(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """`run` with the could-not-run cases turned into exit 2 and one line on stderr."""

    def command(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except CannotRun as exc:
            print(f"error: {exc}", file=sys.stderr)
        except Unreachable as exc:
            print(f"error: the control plane did not answer: {exc}", file=sys.stderr)
        except ApiError as exc:
            print(f"error: {exc}", file=sys.stderr)
            if exc.status == 401:
                print("(log in again: kaizen-studio login, or set KAIZEN_API_KEY)", file=sys.stderr)
        return COULD_NOT_RUN

    return command


# -- who and where ---------------------------------------------------------------------------


def _credentials_file() -> Path:
    return default_home() / CREDENTIALS


def _saved() -> dict[str, Any]:
    try:
        saved = json.loads(_credentials_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CannotRun(f"cannot read {_credentials_file()}: {exc}") from exc
    return saved if isinstance(saved, dict) else {}


def _save(url: str, tokens: TokenResponse, email: str | None) -> None:
    path = _credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    record = {
        "url": url,
        "email": email,
        "organization_id": str(tokens.organization_id),
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
    }
    scratch = path.with_suffix(".tmp")
    scratch.unlink(missing_ok=True)  # a leftover keeps its own mode; ours is made 0600
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(record, out)
    scratch.replace(path)


def _checked(url: str) -> str:
    """`url`, unless a credential would cross the network in clear text to reach it."""
    try:
        check_control_plane_url(
            url,
            allow_insecure=os.environ.get("KAIZEN_ALLOW_INSECURE_CONTROL_PLANE", "").lower()
            in ("1", "true", "yes"),
            setting="the control plane URL",
            carries="your password, tokens or API key",
        )
    except InsecureControlPlane as exc:
        raise CannotRun(str(exc)) from None
    return url


def connect(args: argparse.Namespace) -> KaizenClient:
    saved = _saved()
    url = args.url or os.environ.get("KAIZEN_URL") or saved.get("url")
    if not url:
        raise CannotRun(
            "which control plane? pass --url, set KAIZEN_URL or run kaizen-studio login"
        )
    _checked(url)
    api_key = args.api_key or os.environ.get("KAIZEN_API_KEY")
    if api_key:
        return KaizenClient(url, api_key=api_key)
    if saved.get("url") != url or not saved.get("access_token"):
        raise CannotRun(f"not logged in to {url}: run kaizen-studio login, or set KAIZEN_API_KEY")
    email = saved.get("email")
    return KaizenClient(
        url,
        access_token=saved["access_token"],
        refresh_token=saved.get("refresh_token"),
        on_tokens=lambda tokens: _save(url, tokens, email),
    )


# -- the commands ----------------------------------------------------------------------------


def _login(args: argparse.Namespace) -> int:
    url = args.url or os.environ.get("KAIZEN_URL")
    if not url:
        raise CannotRun("which control plane? pass --url or set KAIZEN_URL")
    _checked(url)
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = os.environ.get("KAIZEN_PASSWORD") or getpass.getpass(
            f"password for {args.email}: "
        )
    with KaizenClient(url) as client:
        try:
            tokens = client.auth.login(
                args.email, password, totp=args.totp, organization_id=args.organization
            )
        except ApiError as exc:
            if exc.status in (401, 403, 422):  # wrong password, MFA code needed, bad field
                print(f"error: {exc.message}", file=sys.stderr)
                return COULD_NOT_RUN
            raise
    _save(url, tokens, args.email)
    print(f"logged in to {url} as {args.email} (organisation {tokens.organization_id})")
    return 0


def _source_text(paths: list[Path]) -> tuple[str, int] | int:
    """The documents under `paths` as one source (each document's own text), validated
    offline as one set first; or the exit code, said on stderr."""
    sources = read_sources(paths)
    if sources is None:
        return COULD_NOT_RUN
    documents = []
    try:
        for filename, text in sources:
            documents.extend(parse_policy_source(text, filename, check_rego=False))
        PolicySet.from_documents(documents, rego_checked=False)
    except PolicyValidationError as exc:
        print(exc.format(), file=sys.stderr)
        return POLICY_FAULT
    if not documents:
        raise CannotRun(f"no policy documents under {', '.join(map(str, paths))}")
    texts = [d.source.text.strip("\n") for d in documents if d.source is not None]
    return "\n---\n".join(texts) + "\n", len(documents)


def _push_paths(client: KaizenClient, paths: list[Path], fmt: str) -> int:
    prepared = _source_text(paths)
    if isinstance(prepared, int):
        return prepared
    source, count = prepared
    try:
        applied = client.policies.apply(source)
    except ApiError as exc:
        if exc.status == 422:  # what only the control plane can judge (e.g. Rego it compiles)
            _say_refusal("push", exc, fmt)
            return POLICY_FAULT
        raise
    summary = (
        f"pushed {count} documents: {len(applied.created)} created, "
        f"{len(applied.updated)} updated, {len(applied.unchanged)} unchanged (drafts)"
    )
    print(summary, file=sys.stderr if fmt != "text" else sys.stdout)
    return 0


def _push(args: argparse.Namespace) -> int:
    with connect(args) as client:
        code = _push_paths(client, args.paths, args.format)
    if code == 0 and args.format != "text":
        print(_render_step("push", None, args.format))
    return code


def _test_remote(args: argparse.Namespace) -> int:
    with connect(args) as client:
        if args.paths:
            code = _push_paths(client, args.paths, "json")  # the summary on stderr
            if code:
                return code
        report = client.policies.test()
    return print_report(report.model_dump(mode="json"), args.format)


def _since(value: str, now: datetime) -> datetime:
    match = _DURATION.match(value)
    if match:
        return now - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CannotRun(
            f"--since/--until {value!r}: a duration (30m, 24h, 7d) or an ISO time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _replay(args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    since, until = _since(args.since, now), _since(args.until, now) if args.until else None
    with connect(args) as client:
        job = client.policies.replay(since, until=until)
        while job.status in ("queued", "running"):
            print(f"\rreplaying {job.processed}/{job.total} decisions", end="", file=sys.stderr)
            time.sleep(0.5)
            job = client.policies.replay_status(job.id)
        print(file=sys.stderr)
    if job.status != "completed" or job.result is None:
        raise CannotRun(f"replay {job.id} {job.status}: {job.error or 'no result'}")
    result = job.result
    risky = args.fail_on_risky and result.risky > 0
    if args.format == "json":
        print(json.dumps(job.model_dump(mode="json"), indent=2, sort_keys=True))
    else:
        lines = [
            f"replay {job.id}: {result.total} decisions, {result.changed} would change, "
            f"{result.risky} risky",
            *(f"  {pair}: {n}" for pair, n in sorted(result.counts.items())),
        ]
        message = "\n".join(lines)
        print(
            message
            if args.format == "text"
            else _render_step("replay", message if risky else None, args.format, lines)
        )
    return POLICY_FAULT if risky else 0


def _publish(args: argparse.Namespace) -> int:
    with connect(args) as client:
        try:
            revision = client.policies.publish(
                message=args.message, accept_replay=args.accept_replay
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
            # Refused for what the policy is: failing tests (each one a detail) or the gate.
            tests = [d for d in exc.details if "case" in d]
            if tests and args.format != "text":
                print_report(_failing_report(exc.message, tests), args.format)
            else:
                _say_refusal("publish", exc, args.format)
            return POLICY_FAULT
    if args.format == "json":
        print(json.dumps(revision.model_dump(mode="json"), indent=2, sort_keys=True))
        return 0
    text = (
        f"published revision {revision.revision} "
        f"(sha256 {revision.sha256[:12]}…, key {revision.key_id})"
    )
    print(text if args.format == "text" else _render_step("publish", None, args.format, [text]))
    return 0


def _failing_report(message: str, failures: list[dict[str, Any]]) -> dict[str, Any]:
    """The report shape of `PolicyTestReport.to_dict()`, from a refusal's failing cases."""
    return {
        "passed": False,
        "total": len(failures),
        "cases": [
            {"document": f["document"], "case": f["case"], "passed": False} for f in failures
        ],
        "failures": failures,
        "report": message,
    }


# -- machine-readable steps ------------------------------------------------------------------


def _render_step(step: str, failure: str | None, fmt: str, lines: list[str] | None = None) -> str:
    """A command that is not a test run, as one case in the same report shape."""
    passed = failure is None
    report: dict[str, Any] = {
        "passed": passed,
        "total": 1,
        "cases": [{"document": "kaizen-studio policy", "case": step, "passed": passed}],
        "failures": []
        if passed
        else [
            {"document": "kaizen-studio policy", "case": step, "error": failure, "diff": failure}
        ],
        "report": "\n".join(lines or []),
    }
    return render(report, fmt, suite=f"kaizen-policy-{step}")


def _say_refusal(step: str, exc: ApiError, fmt: str) -> None:
    where = [
        f"  {d.get('file') or d.get('document', '')}:{d.get('line', '')}:{d.get('column', '')}: "
        f"{d.get('field', '')}: {d.get('message', '')}"
        for d in exc.details
        if d.get("message")
    ]
    message = "\n".join([f"{step} refused: {exc.message}", *where])
    if fmt == "text":
        print(message, file=sys.stderr)
    else:
        print(_render_step(step, message, fmt))
