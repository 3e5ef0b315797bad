"""Every failure the resource reports, as one hierarchy.

The CloudFormation edge turns any of these into a FAILED response whose Reason is ``str(error)``;
so each message is written for the person reading the stack events: it names the property, user
or ARN at fault and, where there is one, the fix.
"""

from __future__ import annotations

from collections.abc import Sequence


class JetsDeployIamError(Exception):
    """Base class: an expected failure with a message a person can act on."""


class InvalidPropertiesError(JetsDeployIamError):
    """ResourceProperties break the contract; raised before any IAM call."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class PreflightError(JetsDeployIamError):
    """The plan cannot apply (missing user, full group quota, bad policy ARN); no write was made."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class GroupConflictError(JetsDeployIamError):
    """The group exists but this resource does not own it (and may not adopt it)."""


class MalformedEventError(JetsDeployIamError):
    """The event lacks what the protocol needs to answer it: it is logged and dropped."""


class RegistryError(JetsDeployIamError):
    """The registry cannot be read or written: the request fails before any IAM write."""


class RegistryConflictError(RegistryError):
    """Someone else wrote the resource's record between our read and our write."""


class CorrectionUnderWayError(RegistryConflictError):
    """The scheduled drift check took the record to correct its group, after this request read
    it and before its first IAM write: the request waits for it, then decides again."""


class IamApplyError(JetsDeployIamError):
    """An IAM write failed while applying a plan; earlier writes of the plan stay applied."""

    def __init__(self, change: str, code: str, message: str) -> None:
        self.change = change
        self.code = code
        self.detail = message
        super().__init__(f"{change} failed: {code}: {message}")


class DeadlineExceededError(JetsDeployIamError):
    """Too little Lambda time is left to start another IAM call safely."""


class ResponseTooLargeError(JetsDeployIamError):
    """CloudFormation rejects response bodies over 4,096 bytes; crhelper does not check."""


class ConfigurationError(JetsDeployIamError):
    """The function's own environment (JETS_* variables) is wrong: a deployment problem."""
