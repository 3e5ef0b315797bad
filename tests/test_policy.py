"""Semantic policy equality: IAM returns documents decoded, re-ordered and simplified."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from jets_deploy_iam import policy


def doc(*statements: dict[str, object]) -> dict[str, object]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_order_of_actions_and_statements_does_not_matter() -> None:
    a = doc(
        {"Effect": "Allow", "Action": ["s3:*", "iam:*"], "Resource": ["*"]},
        {"Effect": "Allow", "Action": ["sqs:Send*"], "Resource": ["*"]},
    )
    b = doc(
        {"Resource": "*", "Action": "sqs:Send*", "Effect": "Allow"},
        {"Effect": "Allow", "Action": ["iam:*", "s3:*"], "Resource": "*"},
    )
    assert policy.same_policy(a, b)


def test_a_different_action_is_a_different_policy() -> None:
    a = doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]})
    b = doc({"Effect": "Allow", "Action": ["s3:Get*"], "Resource": ["*"]})
    assert not policy.same_policy(a, b)


def test_a_different_resource_is_a_different_policy() -> None:
    a = doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::a-*"]})
    b = doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["arn:aws:s3:::b-*"]})
    assert not policy.same_policy(a, b)


def test_single_statement_object_equals_list_of_one() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert policy.same_policy({"Version": "2012-10-17", "Statement": statement}, doc(statement))


def test_url_encoded_documents_are_decoded() -> None:
    original = doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]})
    stored = quote(json.dumps(original))
    assert policy.parse_stored(stored) == original


def test_size_ignores_whitespace() -> None:
    assert policy.counted_size('{ "a" : [ 1, 2 ] }') == len('{"a":[1,2]}')


def test_baseline_document_shape() -> None:
    document = policy.baseline_document(("s3", "logs"), ())
    assert document == doc({"Effect": "Allow", "Action": ["s3:*", "logs:*"], "Resource": ["*"]})


def test_default_baseline_fits_the_limit_many_times() -> None:
    size = policy.counted_size(
        policy.render(policy.baseline_document(policy.BASELINE_SERVICES, ()))
    )
    assert size < policy.MAX_GROUP_INLINE_POLICY_CHARS // 10


def test_actions_of_collects_every_statement() -> None:
    document = doc(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Allow", "Action": ["sqs:Send*", "sns:Publish"], "Resource": "*"},
    )
    assert policy.actions_of(document) == {"s3:*", "sqs:Send*", "sns:Publish"}


def condition(values: object) -> dict[str, object]:
    return doc(
        {
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": "*",
            "Condition": {"StringEquals": {"iam:PassedToService": values}},
        }
    )


def test_condition_values_are_compared_as_sets_not_by_their_first_element() -> None:
    assert policy.same_policy(
        condition(["lambda", "codebuild"]), condition(["codebuild", "lambda"])
    )
    assert not policy.same_policy(condition(["lambda", "codebuild"]), condition(["lambda", "ec2"]))
    assert not policy.same_policy(condition(["lambda", "ec2"]), condition(["lambda"]))


def test_a_single_condition_value_equals_a_list_of_one_and_differs_from_another() -> None:
    assert policy.same_policy(condition("lambda"), condition(["lambda"]))
    assert not policy.same_policy(condition(["lambda"]), condition(["ec2"]))


def test_boolean_and_numeric_condition_values_compare_without_error() -> None:
    secure = doc(
        {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {
                "Bool": {"aws:SecureTransport": True},
                "NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
            },
        }
    )
    assert policy.same_policy(secure, json.loads(json.dumps(secure)))
    assert not policy.same_policy(secure, condition("lambda"))


def test_version_and_id_are_part_of_the_policy() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    current = {"Version": "2012-10-17", "Statement": [statement]}
    assert not policy.same_policy(current, {"Version": "2008-10-17", "Statement": [statement]})
    assert not policy.same_policy(current, {**current, "Id": "deploy"})
    assert policy.same_policy({**current, "Id": "deploy"}, {"Id": "deploy", **current})


def test_the_order_of_a_documents_own_keys_does_not_matter() -> None:
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    a = {"Version": "2012-10-17", "Id": "x", "Statement": statement}
    b = {"Statement": [statement], "Id": "x", "Version": "2012-10-17"}
    assert policy.same_policy(a, b)


def test_repeated_actions_are_the_same_policy() -> None:
    a = doc({"Effect": "Allow", "Action": ["s3:*", "s3:*"], "Resource": "*"})
    b = doc({"Effect": "Allow", "Action": "s3:*", "Resource": ["*", "*"]})
    assert policy.same_policy(a, b)


def test_documents_without_statements_compare_and_grant_nothing() -> None:
    assert policy.same_policy({"Version": "2012-10-17"}, {"Version": "2012-10-17"})
    assert policy.actions_of({"Version": "2012-10-17"}) == frozenset()


def test_actions_of_a_single_statement_object_and_of_not_action() -> None:
    single = {"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*"}}
    assert policy.actions_of(single) == {"s3:*"}
    excluding = doc({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert policy.actions_of(excluding) == frozenset()


def test_a_decoded_document_is_taken_as_is() -> None:
    """A value that merely looks URL-encoded (%41) is not decoded a second time."""
    original = doc({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/%41"})
    assert policy.parse_stored(json.dumps(original)) == original
    assert policy.parse_stored(original) == original


def test_a_stored_document_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        policy.parse_stored("[1, 2]")


def test_the_rendered_document_is_the_same_json() -> None:
    original = doc({"Effect": "Allow", "Action": ["s3:*"], "Resource": ["*"]})
    assert json.loads(policy.render(original)) == original
    assert policy.counted_size(policy.render(original)) == len(policy.render(original))
