"""`scoped`: what `jets deploy` and `jets delete` of one generation need, on one app's resources.

Each statement groups one kind of resource; its actions are the calls Jets' CLI makes and the
calls CloudFormation makes with the member's credentials for the resources Jets declares
(`tests/data/jets_calls.yaml` lists every call with its source; the tests evaluate them). Where
IAM cannot scope by name (API Gateway ids and Route53 zones are random, event source mappings get
a UUID) the statement is narrowed by a condition or to the one kind of resource Jets touches.

The whole document must stay within IAM's 5,120 characters per group, so read-only actions on the
app's own resources use wildcards (`s3:Get*`, `lambda:Get*`); every write is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jets_deploy_iam.profiles.document import VERSION, Document, allow
from jets_deploy_iam.profiles.generations import Generation, generation_of
from jets_deploy_iam.profiles.naming import AppNames

#: Managed policies Jets itself attaches to roles it creates, per generation: the S3-event
#: stack's function role (Jets 3-5), the CodeBuild role's defaults (Jets 6).
JETS_MANAGED_POLICIES: dict[Generation, tuple[str, ...]] = {
    Generation.LOCAL: ("service-role/AWSLambdaBasicExecutionRole",),
    Generation.REMOTE: ("AmazonSSMReadOnlyAccess", "AWSCertificateManagerReadOnly"),
}

#: The services the app's roles are created for (`iam:PassedToService`).
PASSED_TO: dict[Generation, tuple[str, ...]] = {
    Generation.LOCAL: ("lambda.amazonaws.com",),
    Generation.REMOTE: ("codebuild.amazonaws.com",),
}

_STACK_ACTIONS = [
    "cloudformation:CreateStack",
    "cloudformation:UpdateStack",
    "cloudformation:DeleteStack",
    "cloudformation:DescribeStacks",
    "cloudformation:DescribeStackEvents",
    "cloudformation:DescribeStackResource",
    "cloudformation:DescribeStackResources",
    "cloudformation:GetTemplate",
]
_BUCKET_ACTIONS = [
    "s3:CreateBucket",
    "s3:DeleteBucket",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketOwnershipControls",
    "s3:PutEncryptionConfiguration",
    "s3:PutBucketCORS",
    "s3:PutBucketTagging",
    "s3:PutObject",
    "s3:DeleteObject",
    "s3:AbortMultipartUpload",
    "s3:Get*",
    "s3:List*",
]
_ROLE_ACTIONS = [
    "iam:CreateRole",
    "iam:GetRole",
    "iam:DeleteRole",
    "iam:PutRolePolicy",
    "iam:GetRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:TagRole",
    "iam:UntagRole",
]


def scoped_document(
    project: str,
    partition: str,
    account_id: str,
    additional_actions: Sequence[str],
    jets_version: str = "5",
    app_managed_policy_arns: Sequence[str] = (),
) -> Document:
    """Least privilege for deploying and deleting the Jets project `project` in this account."""
    names = AppNames(project, partition, account_id)
    generation = generation_of(jets_version)
    statements = _common(names, generation, app_managed_policy_arns)
    if generation is Generation.LOCAL:
        statements += _local_deploy(names)
    else:
        statements += _remote_deploy(names)
    if additional_actions:
        statements.append(allow(additional_actions, ["*"]))
    return {"Version": VERSION, "Statement": statements}


def _common(
    names: AppNames, generation: Generation, app_managed_policy_arns: Sequence[str]
) -> list[dict[str, Any]]:
    """Stacks, the bucket, the roles CloudFormation creates, SSM dotenv reads: every generation."""
    stack_actions = list(_STACK_ACTIONS)
    bucket_actions = list(_BUCKET_ACTIONS)
    parameter_actions = ["ssm:GetParameter"]
    if generation is Generation.LOCAL:
        # Public assets are uploaded with `acl: "public-read"`: PutObject with an ACL header.
        bucket_actions.append("s3:PutObjectAcl")
    else:
        stack_actions.append("cloudformation:ContinueUpdateRollback")
        parameter_actions.append("ssm:GetParametersByPath")
    attachable = [names.managed_policy(p) for p in JETS_MANAGED_POLICIES[generation]]
    attachable += [a for a in app_managed_policy_arns if a not in attachable]
    return [
        allow(stack_actions, [names.stacks]),
        allow(bucket_actions, names.buckets),
        allow(_ROLE_ACTIONS, [names.roles]),
        allow(
            ["iam:PassRole"],
            [names.roles],
            {"StringEquals": {"iam:PassedToService": PASSED_TO[generation]}},
        ),
        allow(
            ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
            [names.roles],
            {"StringEquals": {"iam:PolicyARN": attachable}},
        ),
        allow(parameter_actions, [names.parameters]),
    ]


def _local_deploy(names: AppNames) -> list[dict[str, Any]]:
    """Jets 3-5: CloudFormation creates the whole app with the member's credentials."""
    # Event source mappings get a random UUID: scoped by the function they invoke.
    on_app_functions = {"ArnLike": {"lambda:FunctionArn": names.functions}}
    return [
        allow(
            [
                "lambda:CreateFunction",
                "lambda:DeleteFunction",
                "lambda:UpdateFunctionCode",
                "lambda:UpdateFunctionConfiguration",
                "lambda:AddPermission",
                "lambda:RemovePermission",
                "lambda:InvokeFunction",
                "lambda:TagResource",
                "lambda:UntagResource",
                "lambda:ListTags",
                "lambda:Get*",
                "lambda:PublishLayerVersion",
                "lambda:DeleteLayerVersion",
            ],
            [names.functions, *names.gem_layers],
        ),
        allow(["lambda:CreateEventSourceMapping"], ["*"], on_app_functions),
        allow(
            [
                "lambda:GetEventSourceMapping",
                "lambda:UpdateEventSourceMapping",
                "lambda:DeleteEventSourceMapping",
            ],
            [names.event_source_mappings],
            on_app_functions,
        ),
        allow(
            [
                "events:PutRule",
                "events:DeleteRule",
                "events:DescribeRule",
                "events:PutTargets",
                "events:RemoveTargets",
                "events:ListTargetsByRule",
                "events:TagResource",
                "events:UntagResource",
            ],
            [names.rules],
        ),
        allow(
            [
                "sns:CreateTopic",
                "sns:DeleteTopic",
                "sns:GetTopicAttributes",
                "sns:SetTopicAttributes",
                "sns:Subscribe",
                "sns:TagResource",
            ],
            [names.topics],
        ),
        allow(
            ["sns:Unsubscribe"],
            ["*"],
            {"ForAnyValue:StringEquals": {"aws:CalledVia": "cloudformation.amazonaws.com"}},
        ),
        allow(["dynamodb:DescribeTable"], [names.tables]),
        allow(["logs:DeleteLogGroup"], [names.lambda_log_groups]),
        allow(
            [
                "apigateway:GET",
                "apigateway:POST",
                "apigateway:PUT",
                "apigateway:PATCH",
                "apigateway:DELETE",
            ],
            list(names.rest_apis),
        ),
        allow(
            ["route53:ChangeResourceRecordSets"],
            [names.hosted_zones],
            {
                "ForAllValues:StringEquals": {
                    "route53:ChangeResourceRecordSetsRecordTypes": ["A", "CNAME"]
                }
            },
        ),
        allow(
            ["route53:GetHostedZone", "route53:ListResourceRecordSets", "route53:GetChange"],
            [names.hosted_zones, names.route53_changes],
        ),
        # Reads IAM only grants on every resource.
        allow(
            ["logs:DescribeLogGroups", "route53:ListHostedZones*", "sns:GetSubscriptionAttributes"],
            ["*"],
        ),
    ]


def _remote_deploy(names: AppNames) -> list[dict[str, Any]]:
    """Jets 6: the bootstrap stack's CodeBuild project, the remote run, and its logs."""
    return [
        allow(
            [
                "codebuild:CreateProject",
                "codebuild:UpdateProject",
                "codebuild:DeleteProject",
                "codebuild:BatchGetProjects",
                "codebuild:StartBuild",
                "codebuild:BatchGetBuilds",
            ],
            [names.codebuild_projects],
        ),
        allow(["logs:FilterLogEvents"], [names.codebuild_log_groups]),
    ]
