import { describe, expect, it } from "vitest";
import { ROLES } from "../api/types";
import { keyRoles, memberRoles, roleLabel } from "./roles";

describe("roles", () => {
  it("come from the API, most privileged first", () => {
    expect(ROLES[0]).toBe("owner");
    expect(ROLES[ROLES.length - 1]).toBe("viewer");
  });
  it("are labelled with spaces", () => {
    expect(roleLabel("security_admin")).toBe("security admin");
    expect(roleLabel("a_b_c")).toBe("a b c");
  });
  it("offer owner only to those who may grant it, or to keep an owner's current role shown", () => {
    expect(memberRoles(true)).toEqual(ROLES);
    expect(memberRoles(false)).not.toContain("owner");
    expect(memberRoles(false)).toEqual(ROLES.filter((r) => r !== "owner"));
    expect(memberRoles(false, "owner")).toEqual(ROLES);
    expect(memberRoles(false, "admin")).not.toContain("owner");
  });
  it("let an API key carry its creator's role or a lesser one, and none for an unknown role", () => {
    expect(keyRoles("owner")).toEqual(ROLES);
    expect(keyRoles("developer")).toEqual(["developer", "operator", "auditor", "viewer"]);
    expect(keyRoles("viewer")).toEqual(["viewer"]);
    expect(keyRoles("root")).toEqual([]);
    expect(keyRoles(undefined)).toEqual([]);
  });
});
