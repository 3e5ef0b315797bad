"""The profiles against what Jets really calls (tests/data/jets_calls.yaml).

Every pair is filled in with the names Jets and CloudFormation give a real app (jets_names.py),
for a 4- and a 25-character project and three envs, and evaluated against the rendered document
by tests/iam_eval.py and by moto's IAMPolicy; both must agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from iam_eval import Request, allows
from jets_deploy_iam.profiles import JETS_VERSIONS, Generation
from jets_deploy_iam.spec import Environment, parse_properties
from jets_names import Call, JetsApp, calls, load

PROJECTS = ("shop", "inventory-sync-service-01")
ENVS = {"local": ("development", "production", "staging"), "remote": ("dev", "prod", "stag")}
ENV = Environment("aws", "123456789012")
APP_POLICY = "arn:aws:iam::123456789012:policy/shop-reports-access"
CALLS = calls()


def generation(version: str) -> str:
    return "local" if JETS_VERSIONS[version] is Generation.LOCAL else "remote"


def scoped(project: str, version: str, app_policies: tuple[str, ...] = ()) -> dict[str, Any]:
    props: dict[str, Any] = {
        "PolicyProfile": "scoped",
        "ResourcePrefix": project,
        "JetsVersion": version,
    }
    if app_policies:
        props["AppManagedPolicyArns"] = list(app_policies)
    return dict(parse_properties(props, ENV).policy_document)


def baseline(version: str, services: str | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {"JetsVersion": version}
    if services is not None:
        props["Services"] = services
    return dict(parse_properties(props, ENV).policy_document)


@cache
def moto_policy(document_json: str) -> IAMPolicy:
    return IAMPolicy(document_json)


def moto_allows(document: dict[str, Any], request: Request) -> bool:
    """moto's verdict; it takes one value per condition key."""
    context = {k: v if isinstance(v, str) else v[0] for k, v in request.context.items()}
    result = moto_policy(json.dumps(document)).is_action_permitted(
        request.action, request.resource, incoming_condition_values=context
    )
    return bool(result == PermissionResult.PERMITTED)


def request(call: Call, app: JetsApp, app_policy: str = APP_POLICY) -> Request:
    resource, context = call.render(app, app_policy)
    return Request(call.action, resource, context)


def apps(gen: str) -> Iterator[JetsApp]:
    for project in PROJECTS:
        for env in ENVS[gen]:
            yield JetsApp(project, env, gen)


def other_app(app: JetsApp) -> JetsApp:
    """Another project whose name starts like this one (`shop` -> `shopping`)."""
    other = app.project + "ping" if len(app.project) <= 21 else app.project[:-1] + "q"
    return JetsApp(other, app.env, app.generation)


def denied_by_both(document: dict[str, Any], req: Request) -> bool:
    return not allows(document, req) and not moto_allows(document, req)


# -- the data file itself ---------------------------------------------------------------------


def test_the_data_covers_every_feature_of_each_generation() -> None:
    data = load()
    for gen, features in data["features"].items():
        if gen == "remote_only":
            continue
        present = {c.feature for c in CALLS if c.gen == gen}
        assert present == set(features), gen
        for feature in features:
            phases = {p for c in CALLS if c.gen == gen and c.feature == feature for p in c.phases}
            assert phases <= {"first", "later", "delete"}
    core_phases = {p for c in CALLS if c.feature == "core" for p in c.phases}
    assert core_phases == {"first", "later", "delete"}


def test_every_pair_names_its_source_at_a_studied_tag() -> None:
    tags = {"v3.2.2", "v4.0.12", "v5.0.14", "v6.0.5"}
    gems = {"tongueroo/cfn-status", "boltops-tools/aws-logs"}
    for call in CALLS:
        assert call.sources, call
        for source in call.sources:
            where, _, path = source.partition(":")
            assert where in tags | gems, source
            assert path, source
            if where == "v6.0.5":
                assert call.gen == "remote", source
            elif where in tags:
                assert call.gen == "local", source


# -- scoped -------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
@pytest.mark.parametrize("project", PROJECTS)
def test_scoped_allows_every_call_of_every_feature(version: str, project: str) -> None:
    gen = generation(version)
    document = scoped(project, version, (APP_POLICY,))
    refused = [
        (call.feature, req)
        for app in apps(gen)
        if app.project == project
        for call in CALLS
        if call.gen == gen
        for req in [request(call, app)]
        if not (allows(document, req) and moto_allows(document, req))
    ]
    assert refused == []


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
def test_app_managed_policies_are_opt_in(version: str) -> None:
    gen = generation(version)
    opt_in = [c for c in CALLS if c.gen == gen and c.opt_in]
    assert opt_in
    for app in apps(gen):
        without = scoped(app.project, version)
        with_other = scoped(app.project, version, ("arn:aws:iam::aws:policy/ReadOnlyAccess",))
        for call in opt_in:
            assert denied_by_both(without, request(call, app))
            assert denied_by_both(with_other, request(call, app))


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
def test_scoped_denies_every_call_on_another_apps_resources(version: str) -> None:
    """Each pair named after the app, made for `shopping` instead of `shop`, is refused."""
    gen = generation(version)
    checked = 0
    for app in apps(gen):
        document = scoped(app.project, version, (APP_POLICY,))
        other = other_app(app)
        for call in CALLS:
            if call.gen != gen:
                continue
            mine, theirs = request(call, app), request(call, other)
            if (mine.resource, mine.context) == (theirs.resource, theirs.context):
                continue  # not named after the app: see test_what_scoped_cannot_name
            checked += 1
            assert not allows(document, theirs), theirs
            if mine.resource != theirs.resource:  # moto ignores ArnLike: resource-decided only
                assert not moto_allows(document, theirs), theirs
    assert checked > 40


def test_what_scoped_cannot_name_is_only_api_gateway_route53_and_reads() -> None:
    """Pairs that look the same for every app: the README lists them as a limit of `scoped`."""
    app = JetsApp("shop", "development", "local")
    unnamed = {
        (call.action, call.resource.split(":")[2] if call.resource != "*" else "*")
        for call in CALLS
        if request(call, app) == request(call, other_app(app))
    }
    services = {action.split(":")[0] for action, _ in unnamed}
    assert services <= {"apigateway", "route53", "logs", "sns"}
    writes_on_star = {a for a, where in unnamed if where == "*"} - {
        "logs:DescribeLogGroups",
        "route53:ListHostedZones",
        "sns:GetSubscriptionAttributes",
    }
    assert writes_on_star == {"sns:Unsubscribe"}  # conditioned on aws:CalledVia CloudFormation


DENIED_ALWAYS = [
    ("s3:PutBucketPolicy", "arn:aws:s3:::{bucket}", {}),
    ("s3:PutBucketAcl", "arn:aws:s3:::{bucket}", {}),
    ("s3:PutReplicationConfiguration", "arn:aws:s3:::{bucket}", {}),
    ("s3:DeleteBucketPolicy", "arn:aws:s3:::{bucket}", {}),
    ("iam:UpdateAssumeRolePolicy", "arn:aws:iam::123456789012:role/{role}", {}),
    ("iam:PutRolePermissionsBoundary", "arn:aws:iam::123456789012:role/{role}", {}),
    ("iam:CreateUser", "arn:aws:iam::123456789012:user/{project}-admin", {}),
    ("iam:CreateAccessKey", "arn:aws:iam::123456789012:user/{project}-admin", {}),
    (
        "iam:AttachRolePolicy",
        "arn:aws:iam::123456789012:role/{role}",
        {"iam:PolicyARN": "arn:aws:iam::aws:policy/AdministratorAccess"},
    ),
    (
        "iam:PassRole",
        "arn:aws:iam::123456789012:role/{role}",
        {"iam:PassedToService": "ec2.amazonaws.com"},
    ),
    ("iam:PassRole", "arn:aws:iam::123456789012:role/{role}", {}),
    ("apigateway:PATCH", "arn:aws:apigateway:eu-west-1::/account", {}),
    ("apigateway:POST", "arn:aws:apigateway:eu-west-1::/apikeys", {}),
    ("lambda:CreateFunctionUrlConfig", "arn:aws:lambda:eu-west-1:123456789012:function:{ns}-x", {}),
    ("ssm:PutParameter", "arn:aws:ssm:eu-west-1:123456789012:parameter/{project}/dev/X", {}),
    ("sns:Unsubscribe", "*", {}),
    (
        "route53:ChangeResourceRecordSets",
        "arn:aws:route53:::hostedzone/Z0123456789ABCDEFGHIJ",
        {"route53:ChangeResourceRecordSetsRecordTypes": ["A", "NS"]},
    ),
    ("cloudformation:CreateStack", "arn:aws:cloudformation:eu-west-1:123456789012:stack/x/1", {}),
    ("sts:AssumeRole", "arn:aws:iam::123456789012:role/{role}", {}),
]


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
@pytest.mark.parametrize(("action", "resource", "context"), DENIED_ALWAYS)
def test_scoped_denies_what_jets_never_does(
    version: str, action: str, resource: str, context: dict[str, Any]
) -> None:
    app = JetsApp("shop", ENVS[generation(version)][0], generation(version))
    names = app.placeholders()
    role = names["codebuild_role"] if app.generation == "remote" else names["role"]
    req = Request(action, resource.format(**{**names, "role": role}), context)
    assert not allows(scoped("shop", version, (APP_POLICY,)), req)


# -- baseline -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
def test_baseline_allows_every_core_call(version: str) -> None:
    gen = generation(version)
    document = baseline(version)
    for app in apps(gen):
        for call in CALLS:
            if call.gen == gen and call.feature == "core":
                req = request(call, app)
                assert allows(document, req), req
                assert moto_allows(document, req), req


@pytest.mark.parametrize("version", sorted(JETS_VERSIONS))
def test_baseline_of_jets_docs_lacks_sns_and_ssm_which_services_can_add(version: str) -> None:
    """The Jets doc's nine services miss S3 events (sns) and SSM dotenv (ssm) in Jets 3-5."""
    gen = generation(version)
    plain = baseline(version)
    nine_and_two = baseline(version, ",".join([*_nine(), "sns", "ssm"]))
    app = JetsApp("shop", ENVS[gen][0], gen)
    missing = {
        c.action.split(":")[0] for c in CALLS if c.gen == gen and not allows(plain, request(c, app))
    }
    assert missing == ({"sns", "ssm"} if gen == "local" else set())
    assert all(allows(nine_and_two, request(c, app)) for c in CALLS if c.gen == gen)


def _nine() -> list[str]:
    from jets_deploy_iam.policy import BASELINE_SERVICES

    return list(BASELINE_SERVICES)


def test_jets6_baseline_adds_codebuild_and_ssm_reads_to_any_services() -> None:
    document = baseline("6", "s3,cloudformation,iam,logs")
    app = JetsApp("shop", "dev", "remote")
    start = Request(
        "codebuild:StartBuild",
        "arn:aws:codebuild:eu-west-1:123456789012:project/shop-dev-remote",
    )
    by_path = Request(
        "ssm:GetParametersByPath", f"arn:aws:ssm:eu-west-1:123456789012:parameter/shop/{app.env}/"
    )
    assert allows(document, start)
    assert allows(document, by_path)
    assert not allows(baseline("5", "s3,cloudformation,iam,logs"), start)
    assert not allows(document, Request("ssm:PutParameter", by_path.resource))


# -- the evaluator itself -------------------------------------------------------------------


def test_evaluator_matches_moto_on_plain_statements_and_iam_on_conditions() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["s3:Get*"], "Resource": ["arn:aws:s3:::a-*/*"]},
            {
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": ["arn:aws:iam::1:role/a-*"],
                "Condition": {"StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}},
            },
        ],
    }
    cases = [
        (Request("s3:GetObject", "arn:aws:s3:::a-b/k"), True),
        (Request("s3:GetObject", "arn:aws:s3:::A-b/k"), False),  # resources do not
        (Request("s3:PutObject", "arn:aws:s3:::a-b/k"), False),
        (Request("s3:GetObject", "arn:aws:s3:::ab/k"), False),
        (
            Request(
                "iam:PassRole",
                "arn:aws:iam::1:role/a-x",
                {"iam:PassedToService": "lambda.amazonaws.com"},
            ),
            True,
        ),
        (
            Request(
                "iam:PassRole",
                "arn:aws:iam::1:role/a-x",
                {"iam:PassedToService": "ec2.amazonaws.com"},
            ),
            False,
        ),
    ]
    for req, expected in cases:
        assert allows(document, req) is expected, req
        assert moto_allows(document, req) is expected, req
    # IAM compares actions without case (moto does not: checked here alone)
    assert allows(document, Request("s3:getobject", "arn:aws:s3:::a-b/k"))
    # where IAM and moto differ, IAM's rule: a missing key fails the condition
    assert not allows(document, Request("iam:PassRole", "arn:aws:iam::1:role/a-x"))
    assert moto_allows(document, Request("iam:PassRole", "arn:aws:iam::1:role/a-x"))
