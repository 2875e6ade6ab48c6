import { useState, type ReactNode } from "react";
import { NavLink, useNavigate } from "react-router";
import { useAuth } from "../auth/AuthContext";
import { visibleNav } from "../lib/nav";
import { roleLabel } from "../lib/roles";
import { PlanBanner } from "./PlanBanner";

export function Shell({ children }: { children: ReactNode }) {
  const { me, logout } = useAuth();
  const navigate = useNavigate();
  const [open, setOpen] = useState(false);
  if (!me) return null;
  const items = visibleNav(me.permissions);
  const sections = [...new Set(items.map((i) => i.section))];
  return (
    <div className="shell">
      <a className="skip-link" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <button
          type="button"
          className="menu-toggle button-secondary"
          aria-expanded={open}
          aria-controls="sidebar"
          onClick={() => setOpen((o) => !o)}
        >
          Menu
        </button>
        <span className="brand">Kaizen Studio</span>
        <span className="org" title="Organisation">
          {me.organization_name}
        </span>
        <NavLink to="/account" className="whoami">
          {me.label} <span className="badge">{roleLabel(me.role)}</span>
        </NavLink>
        <button
          type="button"
          className="button-secondary"
          onClick={async () => {
            await logout();
            navigate("/login");
          }}
        >
          Log out
        </button>
      </header>
      <nav id="sidebar" className={open ? "sidebar open" : "sidebar"} aria-label="Main">
        {sections.map((section) => (
          <div key={section}>
            <h2 className="nav-section">{section}</h2>
            <ul>
              {items
                .filter((i) => i.section === section)
                .map((item) => (
                  <li key={item.to}>
                    <NavLink to={item.to} onClick={() => setOpen(false)}>
                      {item.label}
                    </NavLink>
                  </li>
                ))}
            </ul>
          </div>
        ))}
        {items.length === 0 && <p className="hint">Your role has no pages here yet.</p>}
      </nav>
      <main id="main" tabIndex={-1}>
        <PlanBanner />
        {children}
      </main>
    </div>
  );
}
