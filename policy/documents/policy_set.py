"""A validated set of policy documents: what a tenant publishes, compiles and tests."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from policy.compile.rego_compile import RegoCompileError, check_modules, compile_rego
from policy.documents.builtin_roles import BUILTIN_ROLES_NAME, builtin_role_policy
from policy.documents.fields import detail_at
from policy.documents.parse import (
    Binding,
    Budget,
    BudgetPolicy,
    Document,
    PolicyTest,
    RegoPolicy,
    Role,
    RolePolicy,
    parse_policy_source,
    rego_details,
)
from policy.documents.source import Path, dotted
from policy.errors import ErrorDetail, PolicyValidationError


@dataclass(frozen=True)
class PolicySet:
    documents: tuple[Document, ...]

    @classmethod
    def from_documents(
        cls,
        documents: Iterable[Document],
        *,
        builtin_roles: bool = True,
        rego_checked: bool = True,
    ) -> PolicySet:
        """Validate the documents as a whole; raises PolicyValidationError.

        With `builtin_roles` the control plane's organisation roles are part of the set
        (tenant roles may inherit them) unless a document of the same name replaces them.
        `rego_checked=False`: the documents were parsed without their Rego checked, so the
        set's modules get every check here (compiled together once).
        """
        docs = list(documents)
        if builtin_roles and all(d.name != BUILTIN_ROLES_NAME for d in docs):
            docs.insert(0, builtin_role_policy())
        details = _set_problems(docs, rego_checked=rego_checked)
        if details:
            raise PolicyValidationError(details)
        return cls(tuple(docs))

    @classmethod
    def from_sources(
        cls, sources: Iterable[tuple[str, str]], *, builtin_roles: bool = True
    ) -> PolicySet:
        """Parse `(filename, text)` pairs and validate them together, reporting every file."""
        documents: list[Document] = []
        details: list[ErrorDetail] = []
        for filename, text in sources:
            try:
                documents.extend(parse_policy_source(text, filename, check_rego=False))
            except PolicyValidationError as exc:
                details.extend(exc.details)
        if details:
            raise PolicyValidationError(details)
        return cls.from_documents(documents, builtin_roles=builtin_roles, rego_checked=False)

    def get(self, name: str) -> Document | None:
        return next((d for d in self.documents if d.name == name), None)

    @property
    def role_policies(self) -> tuple[RolePolicy, ...]:
        return tuple(d for d in self.documents if isinstance(d, RolePolicy))

    @property
    def rego_policies(self) -> tuple[RegoPolicy, ...]:
        return tuple(d for d in self.documents if isinstance(d, RegoPolicy))

    @property
    def budget_policies(self) -> tuple[BudgetPolicy, ...]:
        return tuple(d for d in self.documents if isinstance(d, BudgetPolicy))

    @property
    def policy_tests(self) -> tuple[PolicyTest, ...]:
        return tuple(d for d in self.documents if isinstance(d, PolicyTest))

    @property
    def roles(self) -> dict[str, Role]:
        return {role.name: role for doc in self.role_policies for role in doc.roles}

    @property
    def bindings(self) -> tuple[Binding, ...]:
        return tuple(b for doc in self.role_policies for b in doc.bindings)

    @property
    def budgets(self) -> tuple[Budget, ...]:
        return tuple(b for doc in self.budget_policies for b in doc.budgets)


def _set_problems(docs: list[Document], *, rego_checked: bool) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    seen_docs: dict[str, Document] = {}
    for doc in docs:
        if doc.name in seen_docs:
            details.append(
                _detail(doc, ("metadata", "name"), f"duplicate document name {doc.name!r}")
            )
        seen_docs[doc.name] = doc
    details.extend(_role_problems([d for d in docs if isinstance(d, RolePolicy)]))
    details.extend(_budget_problems([d for d in docs if isinstance(d, BudgetPolicy)]))
    details.extend(_rego_problems([d for d in docs if isinstance(d, RegoPolicy)], rego_checked))
    details.extend(_approver_conflicts([d for d in docs if isinstance(d, RegoPolicy)]))
    return details


def _role_problems(policies: list[RolePolicy]) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    owner: dict[str, tuple[RolePolicy, int]] = {}
    for doc in policies:
        for i, role in enumerate(doc.roles):
            if role.name in owner:
                first = owner[role.name][0].name
                message = f"role {role.name!r} is already defined in {first}"
                details.append(_detail(doc, ("spec", "roles", i, "name"), message))
            else:
                owner[role.name] = (doc, i)
    for doc in policies:
        for i, role in enumerate(doc.roles):
            for j, parent in enumerate(role.inherits):
                if parent not in owner:
                    path: Path = ("spec", "roles", i, "inherits", j)
                    details.append(_detail(doc, path, f"inherits undefined role {parent!r}"))
        for i, binding in enumerate(doc.bindings):
            if binding.role not in owner:
                path = ("spec", "bindings", i, "role")
                details.append(_detail(doc, path, f"binds undefined role {binding.role!r}"))
    inherits = {name: doc.roles[i].inherits for name, (doc, i) in owner.items()}
    for cycle in _cycles(inherits):
        doc, i = owner[cycle[0]]
        j = doc.roles[i].inherits.index(cycle[1])
        message = "role inheritance cycle: " + " -> ".join(cycle)
        details.append(_detail(doc, ("spec", "roles", i, "inherits", j), message))
    return details


def _cycles(inherits: Mapping[str, tuple[str, ...]]) -> Iterator[list[str]]:
    """Each inheritance cycle once, as `[a, b, ..., a]` (iterative DFS, no recursion limit)."""
    done: set[str] = set()
    for root in sorted(inherits):
        if root in done:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(inherits[root]))]
        on_path = {root}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                done.add(node)
            elif child in on_path:
                path = [name for name, _ in stack]
                yield [*path[path.index(child) :], child]
            elif child not in done and child in inherits:
                stack.append((child, iter(inherits[child])))
                on_path.add(child)


def _budget_problems(policies: list[BudgetPolicy]) -> list[ErrorDetail]:
    details: list[ErrorDetail] = []
    seen: set[str] = set()
    for doc in policies:
        for i, budget in enumerate(doc.budgets):
            if budget.name in seen:
                message = f"duplicate budget name {budget.name!r}"
                details.append(_detail(doc, ("spec", "budgets", i, "name"), message))
            seen.add(budget.name)
    return details


def _approver_conflicts(policies: list[RegoPolicy]) -> list[ErrorDetail]:
    """A held decision names packages, not documents: one package, one set of approvers."""
    first: dict[str, RegoPolicy] = {}
    details: list[ErrorDetail] = []
    for doc in policies:
        if doc.package is None:
            continue
        other = first.setdefault(doc.package, doc)
        if other is not doc and other.approvers != doc.approvers:
            message = (
                f"package {doc.package} is also in RegoPolicy {other.name} with other "
                "approvers; documents of one package must name the same approvers"
            )
            details.append(_detail(doc, ("spec", "approvers"), message))
    return details


def _rego_problems(policies: list[RegoPolicy], checked_alone: bool) -> list[ErrorDetail]:
    """Unchecked modules get every check, together (`check_modules`); modules checked one
    by one can still conflict (same rule in one package), so they compile together."""
    by_module = {doc.module_path: doc for doc in policies}
    modules = {path: doc.rego for path, doc in by_module.items()}
    if not checked_alone:
        problems = check_modules(modules) if modules else []
    elif len(policies) < 2:
        return []
    else:
        try:
            compile_rego(modules)
            return []
        except RegoCompileError as exc:
            problems = exc.problems
    details: list[ErrorDetail] = []
    for problem in problems:
        doc = by_module.get(problem.module or "", policies[0] if policies else None)
        if doc is not None:
            details.extend(rego_details(doc, [problem]))
    return details


def _detail(doc: Document, path: Path, message: str) -> ErrorDetail:
    if doc.source is not None:
        return detail_at(doc.source, path, message)
    return ErrorDetail(
        file=f"<{doc.kind} {doc.name}>",
        document=None,
        field=dotted(path),
        line=None,
        column=None,
        message=message,
    )
