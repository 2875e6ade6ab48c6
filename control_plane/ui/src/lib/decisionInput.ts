// The simulate form writes its fields into the decision-input JSON, keeping anything else
// the user typed there.
export interface DecisionForm {
  principal: string;
  roles: string;
  teams: string;
  action: string;
  resource: string;
  workspace: string;
  channel: "api" | "cli" | "mcp";
  tool: string;
}

export const defaultForm: DecisionForm = {
  principal: "user:alice@example.com",
  roles: "agent-user",
  teams: "",
  action: "invoke",
  resource: "agent:support-bot",
  workspace: "prod",
  channel: "api",
  tool: "",
};

const list = (text: string) =>
  text
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);

type Json = Record<string, unknown>;
const obj = (value: unknown): Json =>
  value && typeof value === "object" && !Array.isArray(value) ? (value as Json) : {};

/** The decision input for `form`, merged over `current` (JSON text; ignored if invalid). */
export function mergeDecisionInput(current: string, form: DecisionForm): Json {
  let base: Json = {};
  try {
    base = obj(JSON.parse(current));
  } catch {
    base = {};
  }
  const principalType = form.principal.includes(":") ? form.principal.split(":", 1)[0] : "user";
  const resourceType = form.resource.includes(":") ? form.resource.split(":", 1)[0] : form.resource;
  const principal = obj(base.principal);
  const resource = obj(base.resource);
  const result: Json = {
    ...base,
    principal: {
      attributes: {},
      ...principal,
      id: form.principal,
      type: principalType,
      roles: list(form.roles),
      teams: list(form.teams),
    },
    action: form.action,
    resource: { attributes: {}, ...resource, type: resourceType, id: form.resource },
    channel: form.channel,
  };
  const target = result.resource as Json;
  if (form.workspace) target.workspace = form.workspace;
  else delete target.workspace;
  if (form.tool) result.tool = { arguments: {}, ...obj(base.tool), name: form.tool };
  else delete result.tool;
  return result;
}
