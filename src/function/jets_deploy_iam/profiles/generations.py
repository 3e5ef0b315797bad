"""Jets major versions, grouped by what a `jets deploy` needs from the member's credentials.

Jets 3, 4 and 5 deploy from the member's machine: the CLI uploads code and templates and
CloudFormation creates every resource of the app (functions, roles, rules, the API) with the
member's credentials. Jets 6 deploys remotely: the CLI syncs a small bootstrap stack (a bucket, a
CodeBuild project and its role), reads SSM parameters, and starts a CodeBuild build that deploys
the app with the CodeBuild role, not with the member's credentials.
"""

from __future__ import annotations

from enum import Enum


class Generation(Enum):
    """How a Jets version deploys; decides which policy a profile renders."""

    LOCAL = "local"  # Jets 3, 4, 5
    REMOTE = "remote"  # Jets 6


#: The values `JetsVersion` accepts, with the generation each deploys like.
JETS_VERSIONS: dict[str, Generation] = {
    "3": Generation.LOCAL,
    "4": Generation.LOCAL,
    "5": Generation.LOCAL,
    "6": Generation.REMOTE,
}

DEFAULT_JETS_VERSION = "5"


def generation_of(jets_version: str) -> Generation:
    """The generation of a validated `JetsVersion` (KeyError for anything else)."""
    return JETS_VERSIONS[jets_version]
