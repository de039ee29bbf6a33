"""Teams: workspace policy, budgets with per-user caps, and spend reports (the `tokenbot` family).

Modules are imported where used (nothing is re-exported here), so loading one part of the
family never loads the rest.
"""

from __future__ import annotations
