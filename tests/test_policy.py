"""Semantic policy equality: IAM returns documents decoded, re-ordered and simplified."""

from __future__ import annotations

import json
from urllib.parse import quote

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
