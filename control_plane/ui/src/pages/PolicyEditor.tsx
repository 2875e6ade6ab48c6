import { useState } from "react";
import { Link, useNavigate } from "react-router";
import { PolicySourceEditor } from "../components/PolicySourceEditor";
import { TEMPLATES } from "../lib/templates";

export function PolicyEditorPage() {
  const navigate = useNavigate();
  const [template, setTemplate] = useState("RolePolicy");
  const [initial, setInitial] = useState(TEMPLATES.RolePolicy);
  return (
    <section>
      <p className="breadcrumb">
        <Link to="/policies">Policies</Link> / New
      </p>
      <h1>New policy</h1>
      <p className="hint">
        One or more YAML documents separated by <code>---</code>. Saving creates or updates drafts by{" "}
        <code>metadata.name</code>; nothing takes effect until you publish.
      </p>
      <div className="inline-form">
        <label htmlFor="template">Start from</label>
        <select id="template" value={template} onChange={(e) => setTemplate(e.target.value)}>
          {Object.keys(TEMPLATES).map((name) => (
            <option key={name}>{name}</option>
          ))}
        </select>
        <button type="button" className="button-secondary" onClick={() => setInitial(TEMPLATES[template])}>
          Use template
        </button>
      </div>
      <PolicySourceEditor
        initial={initial}
        canSave
        onSaved={(applied) => {
          const touched = [...applied.created, ...applied.updated];
          const first = applied.items.find((p) => touched.includes(p.name)) ?? applied.items[0];
          if (applied.items.length === 1 && first) navigate(`/policies/${first.id}`);
          else navigate("/policies");
        }}
      />
    </section>
  );
}
