"""The documents and the call data against the IAM action catalogue, parliament and the
CloudFormation resource schemas.

policy_sentry ships IAM's catalogue (every action, its access level, its ARN formats), parliament
lints documents, cfn-lint ships the resource schemas whose handlers list the calls CloudFormation
makes. Findings that are by design are listed here with their reason (the README repeats them).
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from parliament import analyze_policy_string
from policy_sentry.querying.actions import get_action_data, get_actions_for_service
from policy_sentry.querying.arns import get_raw_arns_for_service

from jets_deploy_iam.policy import BASELINE_SERVICES
from jets_deploy_iam.profiles import JETS_VERSIONS
from jets_deploy_iam.spec import Environment, parse_properties
from jets_names import JetsApp, calls

ENV = Environment("aws", "123456789012")
APP_POLICY = "arn:aws:iam::123456789012:policy/shop-reports-access"

#: parliament's findings on `scoped`, each by design.
SCOPED_BY_DESIGN = {
    # Jets creates roles for its functions and gives them inline policies: the honest limit of
    # `scoped` (README, "What scoped does not protect").
    "PERMISSIONS_MANAGEMENT_ACTIONS": "Jets creates the app's roles and their policies",
    "PRIVILEGE_ESCALATION": "a member may pass the app's roles to the app's functions",
    # s3:Get*/List* and lambda:Get* on the app's own ARNs keep the document within 5,120
    # characters; the Get actions on other resource types they name are simply not granted.
    "RESOURCE_MISMATCH": "read wildcards on the app's own ARNs",
    # iam:PolicyARN with StringEquals on exact ARNs: what IAM's own examples use, and the operator
    # moto evaluates (the tests cross-check against it).
    "MISMATCHED_TYPE_BUT_USABLE": "StringEquals on exact policy ARNs",
}
#: parliament's findings on `baseline`: the Jets doc's `<service>:*` on `*` (admin-equivalent).
BASELINE_BY_DESIGN = {
    "CREDENTIALS_EXPOSURE",
    "PERMISSIONS_MANAGEMENT_ACTIONS",
    "PRIVILEGE_ESCALATION",
    "RESOURCE_STAR",
}


def documents(profile: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for version in sorted(JETS_VERSIONS):
        for project in ("shop", "inventory-sync-service-01"):
            props: dict[str, Any] = {"PolicyProfile": profile, "JetsVersion": version}
            if profile == "scoped":
                props.update(ResourcePrefix=project, AppManagedPolicyArns=APP_POLICY)
            elif project != "shop":
                continue
            found.append((f"{profile}-{version}-{project}", _document(props)))
    return found


def _document(props: dict[str, Any]) -> dict[str, Any]:
    return dict(parse_properties(props, ENV).policy_document)


@cache
def catalogue(service: str) -> frozenset[str]:
    return frozenset(a.lower() for a in get_actions_for_service(service))


def expand(action: str) -> set[str]:
    service, _, name = action.partition(":")
    pattern = re.compile(re.escape(f"{service}:{name}").replace(r"\*", ".*"), re.IGNORECASE)
    return {a for a in catalogue(service) if pattern.fullmatch(a)}


@cache
def arn_formats(action: str) -> tuple[tuple[str, str], ...]:
    service, _, name = action.partition(":")
    rows = get_action_data(service, name)[service]
    return tuple((r["resource_arn_format"], r["access_level"]) for r in rows)


def format_matches(arn_format: str, resource: str) -> bool:
    if arn_format == "*":
        return resource == "*"
    regex = re.escape(arn_format)
    regex = re.sub(r"\\\$\\\{[^}]*\\\}", ".+", regex)
    return re.fullmatch(regex, resource) is not None


ALL_DOCUMENTS = documents("scoped") + documents("baseline")


@pytest.mark.parametrize(("name", "document"), ALL_DOCUMENTS, ids=[n for n, _ in ALL_DOCUMENTS])
def test_every_granted_action_exists_in_the_catalogue(name: str, document: dict[str, Any]) -> None:
    for statement in document["Statement"]:
        for action in statement["Action"]:
            assert expand(action), f"{name}: {action} matches no IAM action"


def test_every_called_action_exists_and_its_resource_has_the_catalogues_format() -> None:
    app = JetsApp("shop", "development", "local")
    for call in calls():
        service = call.action.partition(":")[0]
        assert call.action.lower() in catalogue(service), call.action
        resource, _ = call.render(JetsApp(app.project, app.env, call.gen), APP_POLICY)
        formats = [f for f, _ in arn_formats(call.action)]
        if service == "apigateway":
            # The catalogue keys actions by prefix, and API Gateway's v2 page overwrites the
            # REST (v1) page's HTTP verbs: check against every resource type of the prefix.
            formats += get_raw_arns_for_service(service)
        assert any(format_matches(f, resource) for f in formats), (call.action, resource)


SCOPED = documents("scoped")


@pytest.mark.parametrize(("name", "document"), SCOPED, ids=[n for n, _ in SCOPED])
def test_scoped_has_no_star_action_no_iam_star_and_no_unconditioned_write_on_star(
    name: str, document: dict[str, Any]
) -> None:
    for statement in document["Statement"]:
        actions = statement["Action"]
        assert "*" not in actions, name
        assert "iam:*" not in actions, name
        if statement["Resource"] == ["*"] and "Condition" not in statement:
            levels = {
                level
                for action in actions
                for expanded in expand(action)
                for _, level in arn_formats(expanded)
            }
            assert levels <= {"Read", "List"}, (name, actions, levels)


@pytest.mark.parametrize(("name", "document"), SCOPED, ids=[n for n, _ in SCOPED])
def test_scoped_explicit_s3_writes_exclude_policies_acls_and_replication(
    name: str, document: dict[str, Any]
) -> None:
    s3 = [a for s in document["Statement"] for a in s["Action"] if a.startswith("s3:")]
    writes = [a for a in s3 if not a.startswith(("s3:Get", "s3:List"))]
    assert all("*" not in a for a in writes)
    assert not {a for a in writes if re.search("Policy|BucketAcl|Replication", a)}


@pytest.mark.parametrize(("name", "document"), ALL_DOCUMENTS, ids=[n for n, _ in ALL_DOCUMENTS])
def test_parliament_reports_only_findings_that_are_by_design(
    name: str, document: dict[str, Any]
) -> None:
    findings = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    issues = {f.issue for f in findings.findings}
    allowed = set(SCOPED_BY_DESIGN) if name.startswith("scoped") else BASELINE_BY_DESIGN
    assert issues <= allowed, name


def test_parliament_would_report_what_scoped_avoids() -> None:
    """The linter is live: a statement like the old scoped profile's is reported."""
    old = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["apigateway:*", "s3:Put*"], "Resource": "*"}],
    }
    issues = {f.issue for f in analyze_policy_string(json.dumps(old)).findings}
    assert "RESOURCE_STAR" in issues


@cache
def handler_permissions(resource_type: str, handler: str) -> frozenset[str]:
    import cfnlint

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    providers = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    schema = json.loads((schemas / "resources" / f"{providers[resource_type]}.json").read_text())
    return frozenset(schema["handlers"][handler]["permissions"])


def test_cloudformation_calls_are_in_the_resource_schemas_handlers() -> None:
    checked = 0
    for call in calls():
        if call.by != "cloudformation" or call.cfn_handler not in (
            "create",
            "update",
            "delete",
            "read",
        ):
            continue
        checked += 1
        assert call.action in handler_permissions(call.cfn_type, call.cfn_handler), call
    assert checked > 80


def test_baseline_services_are_services_of_the_catalogue() -> None:
    assert all(catalogue(service) for service in BASELINE_SERVICES)
