"""What each policy profile grants: the Jets doc's `baseline`, and `scoped` to one Jets app.

Every document is derived from what Jets really calls (its CLI's AWS SDK calls, and the calls
CloudFormation makes with the member's credentials for every resource Jets' templates declare);
`tests/data/jets_calls.yaml` lists those calls with their source in Jets' repository and the tests
evaluate each of them against the documents built here.
"""

from __future__ import annotations

from jets_deploy_iam.profiles.baseline import BASELINE_SERVICES, baseline_document
from jets_deploy_iam.profiles.generations import JETS_VERSIONS, Generation, generation_of
from jets_deploy_iam.profiles.naming import MAX_PROJECT_NAME_LENGTH, PROJECT_NAME, AppNames
from jets_deploy_iam.profiles.scoped import scoped_document

__all__ = [
    "BASELINE_SERVICES",
    "JETS_VERSIONS",
    "MAX_PROJECT_NAME_LENGTH",
    "PROJECT_NAME",
    "AppNames",
    "Generation",
    "baseline_document",
    "generation_of",
    "scoped_document",
]
