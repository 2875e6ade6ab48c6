// The organisation roles as the studio offers them. The list itself is generated from the
// API (src/api/roles.ts, most privileged first); these only choose from it.
import { ROLES, type Role } from "../api/types";

/** "security_admin" → "security admin". */
export function roleLabel(role: string): string {
  return role.replaceAll("_", " ");
}

/** The roles a member can be given: owner only by those who may grant it; a member who is
 * an owner keeps "owner" among the choices so the current value stays shown. */
export function memberRoles(canGrantOwner: boolean, current?: string): readonly Role[] {
  return canGrantOwner ? ROLES : ROLES.filter((r) => r !== "owner" || current === "owner");
}

/** The roles an API key made by someone of role `mine` can carry: theirs and every less
 * privileged one. An unknown role grants none (the API decides in any case). */
export function keyRoles(mine: string | undefined): readonly Role[] {
  const rank = ROLES.indexOf(mine as Role);
  return rank < 0 ? [] : ROLES.slice(rank);
}
