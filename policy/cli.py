"""`kaizen-studio policy …` and `kaizen-studio bundle …`: offline policy work for CI.

The control plane's CLI calls `register(subparsers)` (and adds the commands that talk to
a running control plane, kaizen_studio/remote_cli.py, to the `policy` group it returns);
`python -m policy.cli` runs the offline commands on their own. Every command returns its
exit code: 0 success; 1 the policy is at fault (invalid documents, a failing test, a
rejected bundle); 2 it could not run (bad usage, unreadable files).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from policy.bundles.bundle import build_bundle, load_bundle
from policy.bundles.keys import SigningKeyError, generate_ed25519, jwks_json, load_private_key
from policy.compile.compiler import CompileContext, CompiledPolicy, CompileError, compile_policy
from policy.compile.report_formats import FORMATS, render
from policy.compile.testrunner import run_policy_tests
from policy.documents.policy_set import PolicySet
from policy.errors import BundleError, BundleVerificationError, PolicyValidationError

SOURCE_SUFFIXES = (".yaml", ".yml", ".json")


if TYPE_CHECKING:  # a generic only to the type checker
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
POLICY_FAULT, COULD_NOT_RUN = 1, 2


def register(subparsers: Commands) -> Commands:
    """Add `policy …` and `bundle …`; returns the `policy` group's subcommands."""
    policy = _register_policy(subparsers)
    _register_bundle(subparsers)
    return policy


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kaizen-studio", description=__doc__)
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def _register_policy(subparsers: Commands) -> Commands:
    policy = subparsers.add_parser(
        "policy",
        help="validate, test and compile policy documents",
        description="Work with RolePolicy, RegoPolicy, BudgetPolicy and PolicyTest documents "
        "(YAML or JSON, several per file). A PATH may be a directory: every *.yaml, *.yml "
        "and *.json file under it is read.",
    )
    commands = policy.add_subparsers(dest="policy_command", required=True)

    validate = commands.add_parser(
        "validate",
        help="check documents; print file:line:column: message for each problem",
        description="Parse and validate the documents as one policy set.",
    )
    _add_sources(validate)
    validate.set_defaults(func=_validate)

    test = commands.add_parser(
        "test",
        help="run the PolicyTest cases; non-zero exit and a diff on failure",
        description="Compile the set and run every PolicyTest case against the decision engine.",
    )
    _add_sources(test, nargs="*")  # none only with --remote (kaizen_studio/remote_cli.py)
    test.add_argument("--org", default="policy-tests", help="organization id to compile for")
    add_format(test)
    test.set_defaults(func=_test)

    compile_ = commands.add_parser(
        "compile",
        help="compile to Casbin model/policy, Rego modules and data.json",
        description="Write casbin_model.conf, casbin_policy.csv, data.json and the Rego "
        "modules to --out, or print them as one JSON document.",
    )
    _add_sources(compile_)
    _add_context(compile_)
    compile_.add_argument("--out", type=Path, help="directory to write the compiled files to")
    compile_.set_defaults(func=_compile)
    return commands


def _register_bundle(subparsers: Commands) -> None:
    bundle = subparsers.add_parser(
        "bundle",
        help="build, verify and sign OPA-format policy bundles",
        description="Signed OPA bundles: .manifest, data.json, Rego, and .signatures.json.",
    )
    commands = bundle.add_subparsers(dest="bundle_command", required=True)

    build = commands.add_parser(
        "build",
        help="compile, test and sign a bundle",
        description="Validate, run the policy tests (a failure stops the build), compile and "
        "sign. Byte-identical output for the same input and --iat.",
    )
    _add_sources(build)
    _add_context(build)
    build.add_argument(
        "--key", type=Path, required=True, help="private key PEM (Ed25519, EC or RSA)"
    )
    build.add_argument("--kid", required=True, help="key id written into the signature header")
    build.add_argument("--scope", required=True, help="bundle scope (an organization's id)")
    build.add_argument("--revision", required=True, help="revision, an integer above the last one")
    build.add_argument("--iss", default="kaizen-studio", help="issuer claim (default: %(default)s)")
    build.add_argument("--iat", type=int, help="issued-at, seconds since the epoch (default: now)")
    build.add_argument("--skip-tests", action="store_true", help="build even if policy tests fail")
    build.add_argument("-o", "--output", type=Path, required=True, help="bundle file to write")
    build.set_defaults(func=_build)

    verify = commands.add_parser(
        "verify",
        help="verify a bundle's signature, files, scope and revision",
        description="Exit 0 when the bundle would be activated, 1 with the reason otherwise.",
    )
    verify.add_argument("bundle", type=Path, help="bundle.tar.gz")
    verify.add_argument("--jwks", required=True, help="JWKS file, or an http(s) URL to fetch")
    verify.add_argument("--scope", required=True, help="the scope the bundle must have")
    verify.add_argument("--current-revision", type=int, help="reject revisions not above this")
    verify.set_defaults(func=_verify)

    keygen = commands.add_parser(
        "keygen",
        help="create an Ed25519 signing key and its JWKS",
        description="Write a PKCS#8 PEM private key and a JWKS holding its public key.",
    )
    keygen.add_argument("--kid", required=True, help="key id")
    keygen.add_argument("--key-out", type=Path, required=True, help="private key file to write")
    keygen.add_argument("--jwks-out", type=Path, required=True, help="JWKS file to write")
    keygen.set_defaults(func=_keygen)


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="text",
        help="text (default), json, or junit (JUnit XML for CI test reports)",
    )


def _add_sources(parser: argparse.ArgumentParser, nargs: str = "+") -> None:
    parser.add_argument(
        "paths", nargs=nargs, type=Path, metavar="PATH", help="files or directories"
    )
    parser.add_argument(
        "--no-builtin-roles",
        action="store_true",
        help="do not add the control plane's built-in organisation roles to the set",
    )


def _add_context(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--org", help="organization id (default: --scope, else 'offline')")
    parser.add_argument("--jwks", dest="context_jwks", type=Path, help="JWKS to carry in data.json")
    parser.add_argument(
        "--api-keys", type=Path, help="JSON list of {name, key_hash, roles?} to carry in data.json"
    )


def source_files(paths: Sequence[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(
                p for p in path.rglob("*") if p.suffix in SOURCE_SUFFIXES and p.is_file()
            )
        else:
            yield path


def read_sources(paths: Sequence[Path]) -> list[tuple[str, str]] | None:
    """(file name, text) of every source under `paths`; None (said on stderr) if unreadable."""
    try:
        return [(str(p), p.read_text(encoding="utf-8")) for p in source_files(paths)]
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _load_set(args: argparse.Namespace) -> PolicySet | int:
    """The policy set, or the exit code (said on stderr) why there is none."""
    sources = read_sources(args.paths)
    if sources is None:
        return COULD_NOT_RUN
    try:
        return PolicySet.from_sources(sources, builtin_roles=not args.no_builtin_roles)
    except PolicyValidationError as exc:
        print(exc.format(), file=sys.stderr)
        return POLICY_FAULT


def _context(args: argparse.Namespace) -> CompileContext:
    organization = args.org or getattr(args, "scope", None) or "offline"
    jwks = _read_json(args.context_jwks) if args.context_jwks else {"keys": []}
    api_keys = _read_json(args.api_keys) if args.api_keys else []
    return CompileContext(organization_id=organization, api_keys=api_keys, jwks=jwks)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _validate(args: argparse.Namespace) -> int:
    policy_set = _load_set(args)
    if isinstance(policy_set, int):
        return policy_set
    counts: dict[str, int] = {}
    for document in policy_set.documents:
        counts[document.kind] = counts.get(document.kind, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    print(f"ok: {len(policy_set.documents)} documents ({summary})")
    return 0


def _test(args: argparse.Namespace) -> int:
    if not args.paths:
        print("error: which policies? give one or more PATHs", file=sys.stderr)
        return COULD_NOT_RUN
    policy_set = _load_set(args)
    if isinstance(policy_set, int):
        return policy_set
    report = run_policy_tests(policy_set, context=CompileContext(args.org))
    return print_report(report.to_dict(), args.format)


def print_report(report: dict[str, Any], fmt: str) -> int:
    """Print a test report in `fmt`; 0 when every case passed, else POLICY_FAULT. As text, a
    failing report goes to stderr; json and junit always go to stdout (a CI artefact)."""
    passed = bool(report["passed"])
    stream = sys.stdout if passed or fmt != "text" else sys.stderr
    print(render(report, fmt), file=stream)
    return 0 if passed else POLICY_FAULT


def _compile(args: argparse.Namespace) -> int:
    policy_set = _load_set(args)
    if isinstance(policy_set, int):
        return policy_set
    try:
        compiled = compile_policy(policy_set, _context(args))
    except (CompileError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.out is None:
        print(json.dumps(_compiled_json(compiled), indent=2, sort_keys=True))
        return 0
    for name, content in _compiled_files(compiled).items():
        target = args.out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    print(f"wrote {len(compiled.rego_modules) + 3} files to {args.out}")
    return 0


def _compiled_files(compiled: CompiledPolicy) -> dict[str, bytes]:
    return {
        "casbin_model.conf": compiled.casbin_model.encode(),
        "casbin_policy.csv": compiled.casbin_policy_text().encode(),
        "data.json": compiled.data_json(),
        **{path: text.encode() for path, text in compiled.rego_modules.items()},
    }


def _compiled_json(compiled: CompiledPolicy) -> dict[str, Any]:
    return {
        "casbin_model": compiled.casbin_model,
        "casbin_policy": list(compiled.casbin_policy),
        "rego_modules": dict(compiled.rego_modules),
        "data": compiled.data,
    }


def _build(args: argparse.Namespace) -> int:
    policy_set = _load_set(args)
    if isinstance(policy_set, int):
        return policy_set
    try:
        compiled = compile_policy(policy_set, _context(args))
        if not args.skip_tests:
            report = run_policy_tests(policy_set, compiled)
            if not report.passed:
                print(report.format(), file=sys.stderr)
                print(
                    "bundle not built: policy tests fail (use --skip-tests to override)",
                    file=sys.stderr,
                )
                return 1
        key = load_private_key(args.key.read_bytes())
        data = build_bundle(
            compiled,
            revision=args.revision,
            signing_key=key,
            kid=args.kid,
            scope=args.scope,
            iss=args.iss,
            iat=args.iat,
        )
    except (CompileError, BundleError, SigningKeyError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.output.write_bytes(data)
    print(f"wrote {args.output} (revision {args.revision}, scope {args.scope}, {len(data)} bytes)")
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        jwks = _fetch_jwks(args.jwks)
        data = args.bundle.read_bytes()
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    try:
        bundle = load_bundle(data, jwks, scope=args.scope, current_revision=args.current_revision)
    except BundleVerificationError as exc:
        print(f"{args.bundle}: rejected: {exc}", file=sys.stderr)
        return 1
    print(
        f"{args.bundle}: ok: revision {bundle.revision}, scope {bundle.scope}, key {bundle.key_id}"
    )
    return 0


def _fetch_jwks(location: str) -> Any:
    if location.startswith(("http://", "https://")):
        with urllib.request.urlopen(location, timeout=10) as response:  # noqa: S310 (scheme checked)
            return json.loads(response.read())
    return _read_json(Path(location))


def _keygen(args: argparse.Namespace) -> int:
    pem, jwks = generate_ed25519(args.kid)
    try:
        args.key_out.touch(mode=0o600, exist_ok=False)
        args.key_out.write_bytes(pem)
        args.jwks_out.write_text(jwks_json(jwks), encoding="utf-8")
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return COULD_NOT_RUN
    print(f"wrote {args.key_out} (keep it secret) and {args.jwks_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
