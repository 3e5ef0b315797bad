"""Every validation rule of the resource contract, one test each, asserting the message."""

from __future__ import annotations

from typing import Any

import pytest

from jets_deploy_iam import policy
from jets_deploy_iam.exceptions import InvalidPropertiesError
from jets_deploy_iam.limits import MAX_ATTACHED_POLICIES, MAX_GROUP_INLINE_POLICY_CHARS
from jets_deploy_iam.spec import Environment, is_group_name, parse_previous, parse_properties

ENV = Environment(partition="aws", account_id="111122223333")
TOKEN = {"ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:jets-deploy-iam"}


def parse(**props: Any) -> Any:
    return parse_properties({**TOKEN, **props}, ENV)


def problems(**props: Any) -> str:
    with pytest.raises(InvalidPropertiesError) as caught:
        parse(**props)
    return str(caught.value)


def test_defaults_match_the_jets_documentation() -> None:
    spec = parse()
    assert spec.group_name == "Jets"
    assert spec.path == "/"
    assert spec.policy_name == "JetsPolicy"
    assert spec.users == ()
    assert spec.managed_policy_arns == ()
    assert spec.exclusive is True
    assert spec.adopt_existing_group is False
    assert spec.policy_document == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [f"{s}:*" for s in policy.BASELINE_SERVICES],
                "Resource": ["*"],
            }
        ],
    }


def test_comma_separated_lists_are_trimmed_deduplicated_and_keep_order() -> None:
    spec = parse(Users=" bob, alice ,,bob, carol ")
    assert spec.users == ("bob", "alice", "carol")


def test_yaml_lists_are_accepted() -> None:
    assert parse(Users=["alice", " bob "]).users == ("alice", "bob")


def test_empty_string_means_no_users() -> None:
    assert parse(Users="").users == ()


@pytest.mark.parametrize(("raw", "expected"), [("TRUE", True), ("False", False), (True, True)])
def test_booleans_in_any_case_or_real(raw: Any, expected: bool) -> None:
    assert parse(Exclusive=raw).exclusive is expected


def test_bad_boolean_names_property_and_value() -> None:
    assert "Exclusive must be true or false, got 'yes'" in problems(Exclusive="yes")


def test_unknown_property_is_named() -> None:
    message = problems(GroupNmae="Ops")
    assert "unknown property 'GroupNmae'" in message
    assert "spelling" in message


def test_service_timeout_is_accepted_and_ignored() -> None:
    assert parse(ServiceTimeout="300").group_name == "Jets"


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "emoji\u2603"])
def test_invalid_group_name(name: str) -> None:
    assert "GroupName" in problems(GroupName=name)


def test_group_name_128_chars_is_fine() -> None:
    assert parse(GroupName="a" * 128).group_name == "a" * 128


def test_group_name_must_be_a_string() -> None:
    assert "GroupName must be a string, got ['a']" in problems(GroupName=["a"])


@pytest.mark.parametrize("path", ["/ops/", "/a/b/c/"])
def test_valid_paths(path: str) -> None:
    assert parse(GroupPath=path).path == path


@pytest.mark.parametrize("path", ["ops", "/ops", "/o ps/", "/" + "a" * 511 + "/"])
def test_invalid_paths(path: str) -> None:
    assert "GroupPath" in problems(GroupPath=path)


def test_invalid_policy_name() -> None:
    assert "PolicyName 'bad name'" in problems(PolicyName="bad name")


def test_unknown_profile() -> None:
    assert "PolicyProfile 'admin' is invalid: use baseline or scoped" in problems(
        PolicyProfile="admin"
    )


def test_scoped_requires_resource_prefix() -> None:
    assert "ResourcePrefix '' is invalid" in problems(PolicyProfile="scoped")


def test_scoped_rejects_uppercase_prefix() -> None:
    assert "ResourcePrefix 'MyApp'" in problems(PolicyProfile="scoped", ResourcePrefix="MyApp")


def test_scoped_prefix_is_the_project_name_of_at_most_25_characters() -> None:
    assert parse(PolicyProfile="scoped", ResourcePrefix="a" * 25).profile == "scoped"
    message = problems(PolicyProfile="scoped", ResourcePrefix="a" * 26)
    assert "ResourcePrefix 'aaaaaaa" in message
    assert "Jets project name (not <project>-<env>), 1-25" in message


def test_jets_version_defaults_to_5_and_accepts_3_to_6() -> None:
    assert parse().jets_version == "5"
    for version in ("3", "4", "5", "6", 6):
        assert parse(JetsVersion=version).jets_version == str(version)


def test_jets_version_names_value_and_fix() -> None:
    message = problems(JetsVersion="7")
    assert "JetsVersion '7' is invalid" in message
    assert "one of 3, 4, 5, 6" in message


def test_jets6_changes_both_profiles() -> None:
    assert "codebuild:*" in policy.actions_of(parse(JetsVersion="6").policy_document)
    assert "codebuild:*" not in policy.actions_of(parse(JetsVersion="5").policy_document)
    scoped6 = parse(PolicyProfile="scoped", ResourcePrefix="shop", JetsVersion="6")
    assert "codebuild:StartBuild" in policy.actions_of(scoped6.policy_document)


def test_app_managed_policy_arns_go_into_the_attach_condition() -> None:
    arn = "arn:aws:iam::123456789012:policy/shop-reports"
    spec = parse(PolicyProfile="scoped", ResourcePrefix="shop", AppManagedPolicyArns=arn)
    conditions = [s.get("Condition", {}) for s in spec.policy_document["Statement"]]
    attachable = next(
        c["StringEquals"]["iam:PolicyARN"]
        for c in conditions
        if c and "StringEquals" in c and "iam:PolicyARN" in c["StringEquals"]
    )
    assert arn in attachable


def test_app_managed_policy_arns_are_checked_and_scoped_only() -> None:
    message = problems(
        PolicyProfile="scoped", ResourcePrefix="shop", AppManagedPolicyArns="not-an-arn"
    )
    assert "AppManagedPolicyArns entry 'not-an-arn' is not a managed policy ARN" in message
    message = problems(AppManagedPolicyArns="arn:aws:iam::aws:policy/ReadOnlyAccess")
    assert "AppManagedPolicyArns applies only to PolicyProfile scoped" in message


def test_too_many_app_managed_policies_for_the_inline_limit_is_named() -> None:
    arns = ",".join(f"arn:aws:iam::123456789012:policy/{'p' * 100}-{i}" for i in range(10))
    message = problems(PolicyProfile="scoped", ResourcePrefix="shop", AppManagedPolicyArns=arns)
    assert f"IAM allows {MAX_GROUP_INLINE_POLICY_CHARS} per group" in message
    assert "AppManagedPolicyArns" in message


def test_prefix_with_baseline_is_a_mistake() -> None:
    assert "ResourcePrefix applies only to PolicyProfile scoped" in problems(ResourcePrefix="demo")


def test_services_with_scoped_is_a_mistake() -> None:
    message = problems(PolicyProfile="scoped", ResourcePrefix="demo", Services="s3")
    assert "Services applies only to PolicyProfile baseline" in message


def test_bad_service_prefix() -> None:
    assert "Services entry 'S3!'" in problems(Services="S3!,lambda")


def test_empty_policy_is_refused() -> None:
    assert "the policy would be empty" in problems(Services="")


def test_additional_actions_get_their_own_statement() -> None:
    spec = parse(Services="s3", AdditionalActions="sqs:Send*,sns:Publish")
    assert spec.policy_document["Statement"][1] == {
        "Effect": "Allow",
        "Action": ["sqs:Send*", "sns:Publish"],
        "Resource": ["*"],
    }


@pytest.mark.parametrize("action", ["sqs", "sqs:*:x", ":Get", "sqs:Get Object", "*"])
def test_bad_additional_action(action: str) -> None:
    assert f"AdditionalActions entry {action!r}" in problems(AdditionalActions=action)


def test_bad_user_name() -> None:
    assert "Users entry 'bad user'" in problems(Users="alice,bad user")


def test_user_name_longer_than_64() -> None:
    assert "is not a valid IAM user name" in problems(Users="u" * 65)


def test_bad_policy_arn() -> None:
    assert "ManagedPolicyArns entry 'AdministratorAccess'" in problems(
        ManagedPolicyArns="AdministratorAccess"
    )


def test_deprecated_config_role_names_its_successor() -> None:
    message = problems(ManagedPolicyArns="arn:aws:iam::aws:policy/service-role/AWSConfigRole")
    assert "deprecated" in message
    assert "use arn:aws:iam::aws:policy/service-role/AWS_ConfigRole" in message


def test_policy_arn_of_another_partition() -> None:
    message = problems(ManagedPolicyArns="arn:aws-cn:iam::aws:policy/ReadOnlyAccess")
    assert "partition aws-cn" in message


def test_more_than_ten_policies() -> None:
    over = MAX_ATTACHED_POLICIES + 1
    arns = ",".join(f"arn:aws:iam::111122223333:policy/p{i}" for i in range(over))
    message = f"lists {over} policies: IAM attaches at most {MAX_ATTACHED_POLICIES}"
    assert message in problems(ManagedPolicyArns=arns)


def test_ten_policies_are_fine() -> None:
    arns = [f"arn:aws:iam::111122223333:policy/p{i}" for i in range(MAX_ATTACHED_POLICIES)]
    assert len(parse(ManagedPolicyArns=arns).managed_policy_arns) == MAX_ATTACHED_POLICIES


def test_policy_over_5120_characters() -> None:
    actions = ",".join(f"service{i:03d}:ActionNumber{i:04d}" for i in range(200))
    assert "the inline policy would be" in problems(AdditionalActions=actions)


def test_all_problems_are_reported_together() -> None:
    with pytest.raises(InvalidPropertiesError) as caught:
        parse(GroupName="bad name", Users="ok,bad user", Exclusive="maybe")
    assert len(caught.value.problems) == 3


def test_properties_must_be_an_object() -> None:
    with pytest.raises(InvalidPropertiesError, match="must be an object"):
        parse_properties(["GroupName"], ENV)  # type: ignore[arg-type]


def test_scoped_policy_uses_partition_and_account() -> None:
    env = Environment(partition="aws-us-gov", account_id="444455556666")
    spec = parse_properties({"PolicyProfile": "scoped", "ResourcePrefix": "shop"}, env)
    text = policy.render(spec.policy_document)
    assert "arn:aws-us-gov:cloudformation:*:444455556666:stack/shop-*" in text
    assert "arn:aws-us-gov:iam::444455556666:role/shop-*" in text
    assert "arn:aws:" not in text
    actions = policy.actions_of(spec.policy_document)
    assert "iam:*" not in actions
    assert "*" not in actions
    assert not any(a.startswith("iam:") and "*" in a for a in actions)


def test_environment_from_function_arn() -> None:
    env = Environment.from_function_arn("arn:aws-cn:lambda:cn-north-1:999988887777:function:f")
    assert env == Environment("aws-cn", "999988887777")


def test_previous_properties_that_were_invalid_count_as_none() -> None:
    assert parse_previous({"GroupName": "bad name"}, ENV) is None
    assert parse_previous(None, ENV) is None
    previous = parse_previous({"GroupName": "Ops"}, ENV)
    assert previous is not None
    assert previous.group_name == "Ops"


def test_placeholder_ids_are_not_group_names() -> None:
    assert is_group_name("Jets")
    assert not is_group_name("failed-create:abc")
    assert not is_group_name("")


def test_a_long_value_keeps_its_distinguishing_end_and_balanced_quotes() -> None:
    """The issue's example: the deprecated ARN was cut after 40 characters, hiding which policy
    it was, with an unbalanced quote."""
    message = problems(ManagedPolicyArns="arn:aws:iam::aws:policy/service-role/AWSConfigRole")
    shown = message[message.index("entry ") + len("entry ") : message.index(" is deprecated")]
    assert shown.startswith("'arn:aws:iam")
    assert shown.endswith("/AWSConfigRole'")  # which policy, and the closing quote
    assert "\u2026" in shown  # cut in the middle, said so
    long_user = "deployment-team-member-number-" + "x" * 40 + "-alice!"
    message = problems(Users=long_user)
    assert "\u2026" in message
    assert "-alice!'" in message


# -- the scoped document keeps what the properties add --------------------------------------------


def test_scoped_keeps_additional_actions_in_a_statement_of_their_own() -> None:
    spec = parse(PolicyProfile="scoped", ResourcePrefix="shop", AdditionalActions="sqs:Send*")
    assert {"Effect": "Allow", "Action": ["sqs:Send*"], "Resource": ["*"]} in (
        spec.policy_document["Statement"]
    )
    assert "sqs:Send*" in policy.actions_of(spec.policy_document)


# -- limits are inclusive: exactly at IAM's maximum is accepted -----------------------------------


def _actions_of_size(target: int) -> list[str]:
    """AdditionalActions that make the default baseline document exactly ``target`` characters
    as IAM counts them."""
    actions: list[str] = []

    def size() -> int:
        return policy.counted_size(policy.render(parse(AdditionalActions=actions).policy_document))

    while size() < target - 40:
        actions.append(f"svc{len(actions):04d}:Action{len(actions):04d}")
    actions.append("pad:A")
    actions[-1] = "pad:" + "A" * (target - size() + 1)
    assert size() == target
    return actions


def test_a_document_of_exactly_5120_characters_is_accepted_one_more_is_not() -> None:
    actions = _actions_of_size(MAX_GROUP_INLINE_POLICY_CHARS)
    assert parse(AdditionalActions=actions).policy_name == "JetsPolicy"
    actions[-1] += "A"
    assert f"would be {MAX_GROUP_INLINE_POLICY_CHARS + 1} characters" in problems(
        AdditionalActions=actions
    )


@pytest.mark.parametrize(("length", "valid"), [(1, True), (64, True), (65, False)])
def test_user_names_of_1_to_64_characters(length: int, valid: bool) -> None:
    name = "u" * length
    if valid:
        assert parse(Users=name).users == (name,)
    else:
        assert f"Users entry {name!r}"[:20] in problems(Users=name)


@pytest.mark.parametrize(("length", "valid"), [(1, True), (128, True), (129, False)])
def test_group_names_of_1_to_128_characters(length: int, valid: bool) -> None:
    assert is_group_name("g" * length) is valid


def test_a_path_of_512_characters_is_accepted_one_more_is_not() -> None:
    path = "/" + "p" * 510 + "/"
    assert parse(GroupPath=path).path == path
    assert "GroupPath" in problems(GroupPath="/" + "p" * 511 + "/")


# -- every problem names the property and the value at fault --------------------------------------


@pytest.mark.parametrize(
    ("props", "named"),
    [
        ({"DriftAction": "fix"}, "DriftAction 'fix'"),
        ({"GroupPath": "no-slash"}, "GroupPath 'no-slash'"),
        ({"Users": "alice,a b"}, "Users entry 'a b'"),
        ({"Users": ["alice", 42]}, "Users entries must be strings, got 42"),
        ({"Users": {"alice": 1}}, "Users must be a list or a comma-separated string, got {"),
        ({"GroupName": ["Jets"]}, "GroupName must be a string, got ['Jets']"),
    ],
)
def test_a_problem_names_the_property_and_the_value(props: dict[str, Any], named: str) -> None:
    assert named in problems(**props)


def test_properties_that_are_not_an_object_are_shown() -> None:
    with pytest.raises(InvalidPropertiesError, match=r"got \['GroupName'\]"):
        parse_properties(["GroupName"], ENV)  # type: ignore[arg-type]


def test_several_unknown_properties_are_all_named() -> None:
    message = problems(GroupNmae="Ops", Userz="alice")
    assert "unknown properties 'GroupNmae', 'Userz'" in message


def test_a_bad_list_entry_does_not_hide_the_entries_after_it() -> None:
    assert parse(Users="alice,,bob").users == ("alice", "bob")
    with pytest.raises(InvalidPropertiesError) as caught:
        parse(Users=["alice", 7, "bad user", "bob", "carol!"])
    assert len(caught.value.problems) == 3  # 7, 'bad user' and 'carol!', each named


def test_drift_action_and_adoption_are_read_from_their_properties() -> None:
    spec = parse(DriftAction="correct", AdoptExistingGroup="true")
    assert spec.drift_action == "correct"
    assert spec.adopt_existing_group is True
    assert parse().drift_action == "report"


def test_a_numeric_property_is_taken_as_its_text() -> None:
    assert parse(JetsVersion=6).jets_version == "6"
    assert parse(GroupName=None).group_name == "Jets"


def test_previous_properties_are_read_in_the_functions_partition() -> None:
    arn = "arn:aws:iam::111122223333:policy/Deploy"
    previous = parse_previous({"ManagedPolicyArns": arn}, ENV)
    assert previous is not None
    assert previous.managed_policy_arns == (arn,)


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:lambda",
        "arn::lambda:us-east-1:111122223333:function:f",
        "arn:aws:lambda:us-east-1::function:f",
    ],
)
def test_a_function_arn_without_partition_or_account_falls_back_to_the_defaults(arn: str) -> None:
    assert Environment.from_function_arn(arn) == Environment()


def test_partition_and_account_are_the_arns_second_and_fifth_fields() -> None:
    env = Environment.from_function_arn("arn:aws-cn:lambda:cn-north-1:999988887777")
    assert env == Environment("aws-cn", "999988887777")


def test_a_value_that_fits_is_shown_whole_and_a_longer_one_is_cut_to_the_same_size() -> None:
    """Within 48 characters a value is quoted as is; beyond, it is cut to 48 (start, an
    ellipsis, the distinguishing end)."""
    fits = "u" * 46  # 48 with its quotes
    assert f"Users entry '{fits}!'"[:14] in problems(Users=fits + "!")
    message = problems(Users=fits[:-1] + "!")
    assert f"'{fits[:-1]}!'" in message  # 47 characters + quotes = 48: whole
    longer = "a" * 30 + "b" * 30 + "!"
    message = problems(Users=longer)
    shown = message[message.index("entry ") + len("entry ") : message.index(" is not")]
    assert len(shown) == 48
    assert shown.startswith("'aaaa")
    assert shown.endswith("bbbb!'")
    assert shown.count("\u2026") == 1


@pytest.mark.parametrize(
    ("props", "fix"),
    [
        ({"ResourcePrefix": "shop"}, "ResourcePrefix applies only to PolicyProfile scoped"),
        (
            {"AppManagedPolicyArns": "arn:aws:iam::aws:policy/ReadOnlyAccess"},
            "AppManagedPolicyArns applies only to PolicyProfile scoped (baseline already grants "
            "iam:*): remove it or use scoped",
        ),
        ({"Services": ""}, "Services is empty and there are no AdditionalActions"),
        (
            {"PolicyProfile": "scoped", "ResourcePrefix": "shop", "Services": "s3"},
            "Services applies only to PolicyProfile baseline",
        ),
        ({"Services": "S3"}, "Services entry 'S3' is not a service prefix like 's3' or 'dynamodb'"),
        ({"AdditionalActions": "s3"}, "AdditionalActions entry 's3' is not an action like "),
        ({"PolicyProfile": "scoped", "ResourcePrefix": "Shop"}, "ResourcePrefix 'Shop'"),
    ],
)
def test_a_problem_starts_with_the_property_spelt_as_cloudformation_needs_it(
    props: dict[str, Any], fix: str
) -> None:
    """CloudFormation property names are case-sensitive: the Reason leads with the exact name."""
    with pytest.raises(InvalidPropertiesError) as caught:
        parse(**props)
    assert [p for p in caught.value.problems if p.startswith(fix)] != []


def test_a_problem_shows_what_a_valid_value_looks_like() -> None:
    assert "like 's3:GetObject'" in problems(AdditionalActions="s3")
    assert "a-z 0-9 - starting with a letter or digit" in problems(
        PolicyProfile="scoped", ResourcePrefix="-shop"
    )


def test_scoped_accepts_an_empty_services_parameter() -> None:
    """A template passes its Services parameter to either profile; empty means unset."""
    spec = parse(PolicyProfile="scoped", ResourcePrefix="shop", Services="")
    assert spec.profile == "scoped"
