"""IAM's quotas that this resource plans around, defined once (README, "IAM facts").

Validation (``spec``), the pre-flight (``iam/preflight``), paged reads and the tests all take them
from here, so a quota AWS changes is changed in one line.
"""

from __future__ import annotations

#: Managed policies attached to one group (a fixed quota).
MAX_ATTACHED_POLICIES = 10
#: Groups one IAM user can be a member of.
MAX_GROUPS_PER_USER = 10
#: Characters of all of a group's inline policies together, whitespace not counted.
MAX_GROUP_INLINE_POLICY_CHARS = 5120
#: The largest MaxItems of a paged IAM read (IAM may still return fewer).
MAX_PAGE_ITEMS = 1000
