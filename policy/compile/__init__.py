"""A validated set → what a bundle carries (Casbin text, Rego checked and compiled once,
data.json), and the PolicyTest runner with its report formats."""
