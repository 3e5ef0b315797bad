"""Request parsing and the answer, without AWS: which events can be answered at all, what a
request carries, the Reason a person reads and the size CloudFormation accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jets_deploy_iam.exceptions import InvalidPropertiesError, MalformedEventError
from jets_deploy_iam.request import PLACEHOLDER_PREFIX, ResourceKey, parse_request
from jets_deploy_iam.response import MAX_REASON, MAX_RESPONSE_BYTES, Response, reason_for, shorten
from jets_deploy_iam.spec import Environment

ENV = Environment("aws", "111122223333")
STACK = "arn:aws:cloudformation:us-east-1:111122223333:stack/jets-prod/0b1c2d3e"
URL = "https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/x?X-Amz-Signature=s"


def event(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "RequestType": "Update",
        "ResponseURL": URL,
        "StackId": STACK,
        "RequestId": "r1",
        "LogicalResourceId": "Group",
        "PhysicalResourceId": "Jets",
        "ResourceProperties": {"Users": "alice"},
        "OldResourceProperties": {"Users": "bob"},
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def test_an_update_carries_everything_cloudformation_sent() -> None:
    request = parse_request(event(), ENV)
    assert request.kind == "Update"
    assert request.key == ResourceKey(STACK, "Group")
    assert request.request_id == "r1"
    assert request.physical_id == "Jets"
    assert request.properties == {"Users": "alice"}
    assert request.old_properties == {"Users": "bob"}
    assert request.env == ENV
    assert request.response_url == URL
    assert request.continuation is False
    assert request.declared.users == ("alice",)


def test_a_create_has_no_physical_id_yet_and_a_placeholder_naming_no_group() -> None:
    created = event(RequestType="Create", PhysicalResourceId=None, OldResourceProperties=None)
    request = parse_request(created, ENV)
    assert request.physical_id is None
    assert request.old_properties is None
    assert request.placeholder == PLACEHOLDER_PREFIX + "r1"


def test_a_request_without_properties_declares_the_defaults() -> None:
    request = parse_request(event(ResourceProperties=None), ENV)
    assert request.properties == {}
    assert request.declared.group_name == "Jets"


def test_an_odd_physical_id_is_answered_not_dropped() -> None:
    for odd in (None, 42):
        assert parse_request(event(PhysicalResourceId=odd), ENV).physical_id == ""


def test_a_continued_request_is_marked_by_crhelpers_poll_field() -> None:
    assert parse_request(event(CrHelperPoll=True), ENV).continuation is True
    assert parse_request(event(CrHelperPoll=""), ENV).continuation is False


def test_invalid_properties_fail_when_read_not_when_parsed() -> None:
    request = parse_request(event(ResourceProperties={"GroupName": "bad name"}), ENV)
    with pytest.raises(InvalidPropertiesError, match="GroupName 'bad name'"):
        _ = request.declared


@pytest.mark.parametrize(
    "field", ["RequestType", "ResponseURL", "StackId", "RequestId", "LogicalResourceId"]
)
def test_an_event_without_a_protocol_field_cannot_be_answered(field: str) -> None:
    with pytest.raises(MalformedEventError, match=f"the event has no {field}$"):
        parse_request(event(**{field: None}), ENV)
    with pytest.raises(MalformedEventError, match=f"the event has no {field}$"):
        parse_request(event(**{field: ""}), ENV)
    with pytest.raises(MalformedEventError, match=f"the event has no {field}$"):
        parse_request(event(**{field: 7}), ENV)


def test_every_missing_field_is_named() -> None:
    with pytest.raises(MalformedEventError, match=r"the event has no RequestType, RequestId$"):
        parse_request(event(RequestType=None, RequestId=None), ENV)


def test_an_event_that_is_not_an_object_cannot_be_answered() -> None:
    with pytest.raises(MalformedEventError, match=r"^the event is not a JSON object$"):
        parse_request(["RequestType"], ENV)  # type: ignore[arg-type]


def test_an_unknown_request_type_cannot_be_answered() -> None:
    with pytest.raises(MalformedEventError, match="RequestType 'Replace' is not"):
        parse_request(event(RequestType="Replace"), ENV)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/x",
        "https:///x",
        "https://example.com/a b",
        "https://example.com/a\tb",
        "https://example.com/\x7fb",
        "https://example.com/\x01",
        "https://[::1/x",
    ],
)
def test_a_response_url_crhelper_cannot_put_to_safely_is_refused(url: str) -> None:
    """http.client refuses whitespace and control characters, DEL included, with the signed URL
    in its exception text (which crhelper logs): such an event is dropped."""
    with pytest.raises(MalformedEventError, match=r"^ResponseURL is not an https URL"):
        parse_request(event(ResponseURL=url), ENV)


def test_the_stack_name_is_read_from_the_stack_id() -> None:
    assert ResourceKey(STACK, "Group").stack_name == "jets-prod"
    assert ResourceKey("jets-prod", "Group").stack_name == "jets-prod"
    assert ResourceKey("arn:aws:cloudformation:r:a:stack/only", "G").stack_name == (
        "arn:aws:cloudformation:r:a:stack/only"
    )


def test_the_response_url_is_never_printed() -> None:
    assert "X-Amz-Signature" not in repr(parse_request(event(), ENV))


# -- the answer ---------------------------------------------------------------------------------


def test_the_body_is_what_cloudformation_expects() -> None:
    response = Response("SUCCESS", "Jets", "done", {"Arn": "arn:g"})
    assert response.body(STACK, "r1", "Group") == {
        "Status": "SUCCESS",
        "PhysicalResourceId": "Jets",
        "StackId": STACK,
        "RequestId": "r1",
        "LogicalResourceId": "Group",
        "Reason": "done",
        "Data": {"Arn": "arn:g"},
        "NoEcho": False,
    }


def test_success_failure_and_pending_are_told_apart() -> None:
    assert Response("SUCCESS", "Jets").ok
    assert not Response("SUCCESS", "Jets").pending
    failed = Response.failed("Jets", MalformedEventError("the event has no RequestId"))
    assert (failed.status, failed.physical_id, failed.ok) == ("FAILED", "Jets", False)
    assert failed.reason == "the event has no RequestId"
    pending = Response.in_progress("Jets")
    assert (pending.status, pending.physical_id, pending.pending, pending.ok) == (
        "IN_PROGRESS",
        "Jets",
        True,
        False,
    )


def test_a_response_cloudformation_would_refuse_for_its_size_fails_instead() -> None:
    def with_data(size: int) -> Response:
        return Response("SUCCESS", "Jets", "", {"Big": "x" * size})

    empty = len(json.dumps(with_data(0).body(STACK, "r1", "Group")))
    fits = with_data(MAX_RESPONSE_BYTES - empty)
    assert fits.within_limits(STACK, "r1", "Group") is fits
    over = with_data(MAX_RESPONSE_BYTES - empty + 1).within_limits(STACK, "r1", "Group")
    assert (over.status, over.physical_id) == ("FAILED", "Jets")
    assert over.reason.startswith(f"response would be {MAX_RESPONSE_BYTES + 1} bytes")


def test_a_reason_names_what_iam_refused_and_why() -> None:
    error = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "AddUserToGroup"
    )
    assert reason_for(error) == "IAM refused AddUserToGroup: AccessDenied: not allowed"
    unreachable = reason_for(EndpointConnectionError(endpoint_url="https://iam.amazonaws.com"))
    assert unreachable.startswith("IAM could not be reached: ")
    assert "https://iam.amazonaws.com" in unreachable
    surprise = reason_for(KeyError("Group"))
    assert surprise.startswith("unexpected error KeyError: 'Group'")


def test_a_long_reason_keeps_its_start_and_fits() -> None:
    text = "cause first: " + "detail " * 60
    reason = reason_for(InvalidPropertiesError([text]))
    assert MAX_REASON - 8 < len(reason) <= MAX_REASON
    assert reason.startswith("cause first: detail")
    assert reason.endswith(" (\u2026)")
    assert reason_for(InvalidPropertiesError(["short"])) == "short"


def test_shortening_keeps_what_must_survive_whole() -> None:
    note = " The group was handed back."
    text = shorten("x" * 400, then=note)
    assert MAX_REASON - 8 < len(text) <= MAX_REASON
    assert text.endswith(" (\u2026)" + note)
    exact = "y" * (MAX_REASON - len(note))
    assert shorten(exact, then=note) == exact + note
    assert shorten("a" * 20 + " " * 10 + "b" * 10, limit=30) == "a" * 20 + " (\u2026)"
