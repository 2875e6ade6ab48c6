// The role × permission matrix of a RolePolicy, with inherited permissions resolved.
import { parseAllDocuments } from "yaml";

export interface Grant {
  direct: boolean;
  /** The role the permission comes from when inherited. */
  via?: string;
}

export interface RoleMatrix {
  roles: string[];
  /** `resource action` columns in first-seen order. */
  permissions: { resource: string; action: string; key: string }[];
  grants: Record<string, Record<string, Grant>>;
  bindings: { subject: string; role: string; workspace?: string }[];
  problems: string[];
}

interface RoleSpec {
  name: string;
  inherits: string[];
  permissions: { resource: string; actions: string[] }[];
}

function asRoles(value: unknown): RoleSpec[] {
  if (!Array.isArray(value)) return [];
  return value.flatMap((raw) => {
    if (!raw || typeof raw !== "object" || typeof raw.name !== "string") return [];
    const permissions = Array.isArray(raw.permissions)
      ? raw.permissions.flatMap((p: { resource?: unknown; actions?: unknown }) =>
          p && typeof p.resource === "string" && Array.isArray(p.actions)
            ? [{ resource: p.resource, actions: p.actions.filter((a): a is string => typeof a === "string") }]
            : [],
        )
      : [];
    const inherits = Array.isArray(raw.inherits) ? raw.inherits.filter((r: unknown) => typeof r === "string") : [];
    return [{ name: raw.name, inherits, permissions }];
  });
}

/** Builds the matrix from the RolePolicy documents in a policy source. */
export function roleMatrix(source: string): RoleMatrix {
  const matrix: RoleMatrix = { roles: [], permissions: [], grants: {}, bindings: [], problems: [] };
  let specs: RoleSpec[] = [];
  for (const document of parseAllDocuments(source)) {
    if ("errors" in document && document.errors.length) {
      matrix.problems.push(...document.errors.map((e) => e.message));
      continue;
    }
    const value = document.toJS() as { kind?: string; spec?: { roles?: unknown; bindings?: unknown } } | null;
    if (!value || value.kind !== "RolePolicy") continue;
    specs = specs.concat(asRoles(value.spec?.roles));
    if (Array.isArray(value.spec?.bindings)) {
      for (const b of value.spec.bindings as { subject?: unknown; role?: unknown; workspace?: unknown }[]) {
        if (b && typeof b.subject === "string" && typeof b.role === "string") {
          matrix.bindings.push({
            subject: b.subject,
            role: b.role,
            ...(typeof b.workspace === "string" ? { workspace: b.workspace } : {}),
          });
        }
      }
    }
  }
  const byName = new Map(specs.map((s) => [s.name, s]));
  const seen = new Set<string>();
  for (const spec of specs) {
    for (const p of spec.permissions) {
      for (const action of p.actions) {
        const key = `${p.resource} ${action}`;
        if (!seen.has(key)) {
          seen.add(key);
          matrix.permissions.push({ resource: p.resource, action, key });
        }
      }
    }
  }
  for (const spec of specs) {
    matrix.roles.push(spec.name);
    const grants: Record<string, Grant> = {};
    const visit = (name: string, path: string[]) => {
      const role = byName.get(name);
      if (!role) {
        if (name !== spec.name) matrix.problems.push(`role ${spec.name} inherits unknown role ${name}`);
        return;
      }
      if (path.includes(name)) {
        matrix.problems.push(`inheritance cycle: ${[...path, name].join(" → ")}`);
        return;
      }
      for (const p of role.permissions) {
        for (const action of p.actions) {
          const key = `${p.resource} ${action}`;
          if (name === spec.name) grants[key] = { direct: true };
          else if (!grants[key]) grants[key] = { direct: false, via: name };
        }
      }
      for (const parent of role.inherits) visit(parent, [...path, name]);
    };
    visit(spec.name, []);
    matrix.grants[spec.name] = grants;
  }
  matrix.problems = [...new Set(matrix.problems)];
  return matrix;
}
