"""The AuthZEN 1.0 routes on the sidecar's HTTP port (authz_sidecar/README.md, "AuthZEN").

- `POST /access/v1/evaluation`, `POST /access/v1/evaluations` (batch, with
  `options.evaluations_semantic`): 200 `{"decision": bool, "context": {decision_id, outcome,
  reasons, bundle_revision, approval_request_id?}}` per evaluation; each one goes through
  `Authorizer.evaluate` (the one decision path) and so into the decision log.
- `GET /.well-known/authzen-configuration`: the PDP metadata, when
  KAIZEN_SIDECAR_AUTHZEN_BASE_URL names the URL callers reach this sidecar at.

Who may ask: `Authorization: Bearer <KAIZEN_GATEWAY_TOKEN>` or `Bearer ks_…`, an API key
of this bundle carrying the `decisions:evaluate` scope (or `decisions:*`); anything else
is 401 (403 for a key without the scope). A malformed request is a 400 naming the field,
never a decision; a malformed item of a batch is `decision: false` with the error.
"""

from __future__ import annotations

import hmac
from fnmatch import fnmatchcase

from authz_sidecar import authzen
from authz_sidecar.authn import API_KEY_PREFIX, AuthenticationError
from authz_sidecar.authorizer import Authorizer
from authz_sidecar.authzen import AuthzenError, Evaluation
from authz_sidecar.http_protocol import Request, Response, error_response, json_response
from authz_sidecar.verdict import Verdict
from policy.errors import kind_for_http
from policy.runtime import tracing

EVALUATION_PATH = "/access/v1/evaluation"
EVALUATIONS_PATH = "/access/v1/evaluations"
METADATA_PATH = "/.well-known/authzen-configuration"
PREFIX = "/access/v1/"
DECISION_SCOPE = "decisions:evaluate"
GATEWAY_CALLER = "gateway"
_MAX_REQUEST_ID = 256
_CHALLENGE = 'Bearer realm="kaizen-authzen"'


class CallerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_authzen(path: str) -> bool:
    return path.startswith(PREFIX) or path == METADATA_PATH


class AuthzenApi:
    def __init__(
        self, authorizer: Authorizer, *, gateway_token: bytes | None, base_url: str | None
    ) -> None:
        self._authorizer = authorizer
        self._gateway_token = gateway_token
        self._base_url = base_url.rstrip("/") if base_url else None

    async def handle(self, request: Request, path: str) -> Response:
        echo = _request_id(request.headers.get("x-request-id"))
        status, headers, body = await self._answer(request, path)
        return status, [*headers, *echo], body

    async def _answer(self, request: Request, path: str) -> Response:
        if path == METADATA_PATH:
            if request.method not in ("GET", "HEAD"):
                return error_response(405, "use GET")
            return self.metadata()
        if path not in (EVALUATION_PATH, EVALUATIONS_PATH):
            return error_response(404, f"no AuthZEN route {path[:100]!r}; see {METADATA_PATH}")
        if request.method != "POST":
            return error_response(405, "use POST")
        try:
            caller = self._caller(request.headers.get("authorization"))
        except CallerError as exc:
            challenge = [("www-authenticate", _CHALLENGE)] if exc.status == 401 else []
            status, headers, body = error_response(exc.status, str(exc))
            return status, [*headers, *challenge], body
        try:
            _require_json(request.headers.get("content-type"))
            document = authzen.parse_json(request.body)
            if path == EVALUATION_PATH:
                single = authzen.evaluation(document)
                verdict = await self._evaluate(single, caller, path, request.peer_ip)
                return json_response(200, decision(verdict))
            batch = authzen.batch(document)
        except AuthzenError as exc:
            return _invalid(exc)
        if batch.single is not None:
            verdict = await self._evaluate(batch.single, caller, path, request.peer_ip)
            return json_response(200, decision(verdict))
        answers: list[dict[str, object]] = []
        for item in batch.items:
            if isinstance(item, AuthzenError):
                answer = itemerror_response(item)
            else:
                answer = decision(await self._evaluate(item, caller, path, request.peer_ip))
            answers.append(answer)
            # Short-circuit semantics: nothing after the deciding item is evaluated (or logged).
            if batch.semantic == "deny_on_first_deny" and not answer["decision"]:
                break
            if batch.semantic == "permit_on_first_permit" and answer["decision"]:
                break
        return json_response(200, {"evaluations": answers})

    def metadata(self) -> Response:
        if self._base_url is None:
            return error_response(
                404,
                "AuthZEN metadata is not published: set KAIZEN_SIDECAR_AUTHZEN_BASE_URL to the "
                "URL callers reach this sidecar at",
            )
        base = self._base_url
        document = {
            "policy_decision_point": base,
            "access_evaluation_endpoint": base + EVALUATION_PATH,
            "access_evaluations_endpoint": base + EVALUATIONS_PATH,
        }
        return json_response(200, document, [("cache-control", "max-age=300")])

    async def _evaluate(
        self, evaluation: Evaluation, caller: str, path: str, peer_ip: str | None
    ) -> Verdict:
        # With traces on, one span per evaluation: a batch's decisions each keep their id.
        with tracing.span("authzen evaluation"):
            return await self._authorizer.evaluate(
                evaluation, caller=caller, path=path, source_ip=peer_ip
            )

    def _caller(self, authorization: str | None) -> str:
        """Who is asking: the gateway credential, or an API key with the decision scope."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise CallerError(
                401,
                "send Authorization: Bearer <gateway credential or an API key with the "
                f"{DECISION_SCOPE} scope>",
            )
        if self._gateway_token is not None and hmac.compare_digest(
            credential.encode(), self._gateway_token
        ):
            return GATEWAY_CALLER
        if not credential.startswith(API_KEY_PREFIX):
            raise CallerError(401, "credential is neither the gateway credential nor an API key")
        snapshot = self._authorizer.holder.current
        if snapshot is None:  # API keys are known from the verified bundle only
            raise CallerError(503, "no verified policy bundle loaded: API keys cannot be checked")
        try:
            principal = snapshot.authenticator.authenticate(f"Bearer {credential}")
        except AuthenticationError as exc:
            raise CallerError(401, f"authentication failed: {exc}") from None
        scopes = principal["attributes"].get("scopes") or []
        if not any(_grants_decisions(scope) for scope in scopes):
            raise CallerError(
                403, f"{principal['id']} may not ask for decisions: it lacks {DECISION_SCOPE}"
            )
        return str(principal["id"])


def _grants_decisions(scope: str) -> bool:
    """`decisions:evaluate` or `decisions:*`: the collection must be named, not `*`, so a
    key scoped for everything is not made a PDP client by accident."""
    collection, _, action = scope.partition(":")
    return collection == "decisions" and fnmatchcase("evaluate", action or "*")


def decision(verdict: Verdict) -> dict[str, object]:
    """An AuthZEN Decision: true only for allow; our outcome, reasons and ids in context."""
    return {"decision": verdict.outcome == "allow", "context": verdict.body()}


def itemerror_response(error: AuthzenError) -> dict[str, object]:
    """A batch item that could not be evaluated: closed, saying which field."""
    return {
        "decision": False,
        "context": {"error": {"status": 400, "message": str(error), "field": error.field}},
    }


def _require_json(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise AuthzenError("content-type", "must be application/json")


def _request_id(value: str | None) -> list[tuple[str, str]]:
    """The caller's X-Request-ID, echoed as the spec asks (bounded; encode_response strips
    line breaks)."""
    return [("x-request-id", value[:_MAX_REQUEST_ID])] if value else []


def _invalid(error: AuthzenError) -> Response:
    body = {
        "error": {
            "code": kind_for_http(400).code,
            "message": str(error),
            "details": [{"field": error.field, "message": error.message}],
        }
    }
    return json_response(400, body)
