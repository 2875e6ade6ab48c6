"""Plans, quotas and metering (M12).

Modules: `catalogue` (the plans and their limits as data), `quotas` (an organisation's
plan, its counts, and the check that refuses a create past a limit), `bundle` (the
executions-per-month limit as a generated BudgetPolicy in the organisation's bundle),
`changes` (moving an organisation to another plan: explained refusals, audit, republish),
`warnings` (the 90 % executions warning: webhook event and owners' email, once a month),
`overview` (the plan page: plan, usage of each limit, this month's warning).
Import the module you need: `from control_plane.services.plans import quotas`.
"""
