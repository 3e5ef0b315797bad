"""The StackSet build (`make stackset`): template, code zip, artifact bucket and upload.

The generator runs as it does in `make stackset`: stackset/generate.py under the SAM CLI's
Python (which carries samtranslator), on `.aws-sam/build` (which `make test` builds first) and
on template.yaml as it is now. What it produces is compared with an independent translation of
template.yaml (samtranslator's public `transform`, code location replaced by a placeholder), so
a template change that adds resources, parameters or exports is checked without editing here.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import boto3
import cfnlint.api
import pytest
from cfnlint.decode import cfn_yaml
from moto import mock_aws

import upload
from generate import BUCKET_PLACEHOLDER

pytestmark = pytest.mark.sam  # `make unit` leaves these to `make test`/`make artifact`

ROOT = Path(__file__).resolve().parent.parent
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
RUNTIME_PYTHON = ROOT / ".venv-runtime" / "bin" / "python"
BUILD = ROOT / ".aws-sam" / "build"
GENERATOR = ROOT / "stackset" / "generate.py"
BUCKET_TEMPLATE = ROOT / "stackset" / "artifact-bucket.yaml"

ARTIFACT_BUCKET = {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}
STACKSET_PARAMETERS = {"ArtifactBucketPrefix", "ExportPrefix", "HomeRegion"}
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2", "ca-central-1", "sa-east-1"]
HOME = "eu-west-1"
TEMPLATE_BODY_LIMIT = 51_200  # create-stack-set --template-body

# samtranslator's public entry point, run by the SAM CLI's Python: the reference translation.
REFERENCE_TRANSLATION = """
import json, sys
from samtranslator.translator.transform import transform

class NoManagedPolicyLookup:
    def load(self):
        raise SystemExit("the reference translation needs no managed policy lookup")

print(json.dumps(transform(json.load(sys.stdin), {}, NoManagedPolicyLookup())))
"""

# Runs under the Lambda-like python3.13 (boto3 only): import the handler from the extracted zip
# alone and name the top-level modules that came from it.
IMPORTED_FROM_ZIP = """
import importlib, json, sys
root = sys.argv[2]
importlib.import_module(sys.argv[1])
print(json.dumps(sorted({
    name.split(".")[0] for name, module in list(sys.modules.items())
    if (getattr(module, "__file__", None) or "").startswith(root)
})))
"""


@dataclass(frozen=True)
class Generated:
    """What one run of the generator wrote."""

    out: Path
    text: str
    template: dict[str, Any]
    zips: dict[str, bytes]

    def function_keys(self) -> dict[str, str]:
        """Logical id -> S3 key of every function whose code is in the artifact bucket."""
        return {
            logical_id: resource["Properties"]["Code"]["S3Key"]
            for logical_id, resource in self.template["Resources"].items()
            if resource["Type"] == "AWS::Lambda::Function"
            and resource["Properties"]["Code"].get("S3Bucket") == ARTIFACT_BUCKET
        }


def run_generator(
    out: Path, template: Path = ROOT / "template.yaml", build_dir: Path = BUILD
) -> subprocess.CompletedProcess[str]:
    command = [SAM_PYTHON, GENERATOR, "--template", template, "--build-dir", build_dir]
    return subprocess.run(
        [str(part) for part in [*command, "--out", out]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def generate(
    out: Path, template: Path = ROOT / "template.yaml", build_dir: Path = BUILD
) -> Generated:
    done = run_generator(out, template, build_dir)
    assert done.returncode == 0, done.stderr
    text = (out / "template.json").read_text()
    zips = {path.name: path.read_bytes() for path in (out / "dist").iterdir()}
    return Generated(out, text, json.loads(text), zips)


def load_source(path: Path) -> dict[str, Any]:
    """A SAM template as plain JSON data (short forms expanded)."""
    return json.loads(json.dumps(cfn_yaml.load(str(path))))


def reference_translation(source: dict[str, Any], generated: Generated) -> dict[str, Any]:
    """The SAM template translated by samtranslator's public API, each function with local code
    at the S3 key the generated template names for it, in a bucket named by the generator's
    placeholder literal and swapped for the artifact bucket afterwards (SAM would resolve its
    ${AWS::Region} to the translating region, and it derives some logical ids, e.g. versions,
    from a hash of the code location)."""
    source = copy.deepcopy(source)
    keys = generated.function_keys()
    global_uri = source.get("Globals", {}).get("Function", {}).get("CodeUri")
    local = set()
    for logical_id, resource in source["Resources"].items():
        if resource["Type"] == "AWS::Serverless::Function":
            properties = resource.setdefault("Properties", {})
            uri = properties.get("CodeUri", global_uri)
            if isinstance(uri, str) and not uri.startswith("s3://"):
                local.add(logical_id)
                properties["CodeUri"] = f"s3://{BUCKET_PLACEHOLDER}/{keys[logical_id]}"
    assert local == set(keys) != set()  # every function with local code, and only those, moved
    done = subprocess.run(
        [str(SAM_PYTHON), "-c", REFERENCE_TRANSLATION],
        input=json.dumps(source),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    placeholder = json.dumps(BUCKET_PLACEHOLDER)
    return json.loads(done.stdout.replace(placeholder, json.dumps(ARTIFACT_BUCKET)))


def evaluate(value: Any, names: dict[str, str]) -> str:
    """An export name's value, given the values of the parameters it may reference."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return names[value["Ref"]]
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return str(separator).join(evaluate(part, names) for part in parts)
    if "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        text, variables = (sub, {}) if isinstance(sub, str) else (sub[0], sub[1])

        def one(match: re.Match[str]) -> str:
            name = match[1]
            return evaluate(variables[name], names) if name in variables else names[name]

        return re.sub(r"\$\{([^!}][^}]*)\}", one, text)
    raise AssertionError(f"cannot evaluate export name {value}")


def holds(condition: Any, values: dict[str, str]) -> Any:
    """Evaluate a template rule's assertion the way CloudFormation documents it."""
    if isinstance(condition, str):
        return condition
    if isinstance(condition, list):
        return [holds(item, values) for item in condition]
    ((function, argument),) = condition.items()
    if function == "Ref":
        return values[argument]
    args = holds(argument, values)
    if function == "Fn::Equals":
        return args[0] == args[1]
    if function == "Fn::Not":
        return not args[0]
    if function == "Fn::And":
        return all(args)
    if function == "Fn::Or":
        return any(args)
    if function == "Fn::Contains":
        return args[1] in args[0]
    raise AssertionError(f"no evaluator for {function}")


def assert_same_as_reference(generated: Generated, source: dict[str, Any]) -> None:
    """The generated template declares exactly what the SAM template does once translated with
    its code in the artifact bucket, plus the StackSet parameters, the export names (under
    ExportPrefix instead of the stack name) and the home-region rule."""
    reference = reference_translation(source, generated)
    mine = generated.template
    for key in generated.function_keys().values():
        assert key in generated.zips
    assert set(mine["Resources"]) == set(reference["Resources"])
    for logical_id, expected in reference["Resources"].items():
        assert mine["Resources"][logical_id] == expected, logical_id

    reference_parameters = reference.get("Parameters", {})
    assert set(mine["Parameters"]) == set(reference_parameters) | STACKSET_PARAMETERS
    for name, declared in reference_parameters.items():
        assert mine["Parameters"][name] == declared
    for section in ("Conditions", "Mappings", "Transform"):
        assert mine.get(section) == reference.get(section)

    assert set(mine.get("Outputs", {})) == set(reference.get("Outputs", {}))
    for name, expected in reference.get("Outputs", {}).items():
        actual = copy.deepcopy(mine["Outputs"][name])
        expected = copy.deepcopy(expected)
        if "Export" in expected:
            # The same names a stack called "acme-iam" exports, with ExportPrefix "acme-iam".
            exported = evaluate(actual.pop("Export")["Name"], {"ExportPrefix": "acme-iam"})
            assert exported == evaluate(
                expected.pop("Export")["Name"], {"AWS::StackName": "acme-iam"}
            )
        assert actual == expected, name


def lint(text: str) -> list[str]:
    return [str(match) for match in cfnlint.api.lint(text, regions=LINT_REGIONS)]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    assert BUILD.is_dir(), "no build output: run `make test` (it runs `sam build` first)"
    return generate(tmp_path_factory.mktemp("stackset"))


@pytest.fixture(scope="module")
def source() -> dict[str, Any]:
    return load_source(ROOT / "template.yaml")


# ---------------------------------------------------------------------------------------------
# The template


def test_declares_exactly_what_template_yaml_declares_once_translated(
    generated: Generated, source: dict[str, Any]
) -> None:
    assert_same_as_reference(generated, source)


def test_is_plain_cloudformation_a_service_managed_stack_set_accepts(generated: Generated) -> None:
    assert "Transform" not in generated.template
    types = {resource["Type"] for resource in generated.template["Resources"].values()}
    assert not {t for t in types if t.startswith("AWS::Serverless::")}
    assert "AWS::Serverless" not in generated.text
    assert len(generated.text.encode()) <= TEMPLATE_BODY_LIMIT


def test_lints_clean_in_several_regions(generated: Generated) -> None:
    assert lint(generated.text) == []


def test_home_region_rule_fails_an_instance_in_any_other_region(generated: Generated) -> None:
    rules = [r for r in generated.template["Rules"].values() if "HomeRegion" in json.dumps(r)]
    assert rules

    def allowed(region: str) -> bool:
        values = {"AWS::Region": region, "HomeRegion": HOME}
        return all(holds(a["Assert"], values) for rule in rules for a in rule["Assertions"])

    assert allowed(HOME)
    for other in ("us-east-1", "eu-west-2", "eu-central-1"):
        assert not allowed(other)
    home = generated.template["Parameters"]["HomeRegion"]
    assert "Default" not in home  # an org admin chooses it
    assert re.fullmatch(home["AllowedPattern"], HOME)


def test_exports_default_to_the_names_a_sam_deploy_stack_exports(generated: Generated) -> None:
    """ExportPrefix defaults to samconfig.toml's stack name: consumer stacks (and the example's
    JetsDeployIamStack default) import the same names under both deployment paths."""
    samconfig = (ROOT / "samconfig.toml").read_text()
    stack_name = re.search(r'^stack_name = "(.+)"$', samconfig, re.MULTILINE)
    assert stack_name
    assert generated.template["Parameters"]["ExportPrefix"]["Default"] == stack_name[1]
    example = load_source(ROOT / "examples" / "consumer-stack.yaml")
    assert example["Parameters"]["JetsDeployIamStack"]["Default"] == stack_name[1]
    exports = [o["Export"]["Name"] for o in generated.template["Outputs"].values() if "Export" in o]
    assert exports
    assert all("AWS::StackName" not in json.dumps(name) for name in exports)


def test_a_template_change_needs_no_generator_change(
    tmp_path: Path, source: dict[str, Any]
) -> None:
    """A new resource, a schedule, event-invoke settings, a CodeUri from Globals, a second
    function on the same code with a published alias, and new exports (by Fn::Join, by Fn::Sub
    with a variable map) all come through, checked against the reference translation."""
    changed = copy.deepcopy(source)
    function_id = next(
        logical_id
        for logical_id, resource in changed["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    )
    function = changed["Resources"][function_id]["Properties"]
    function["Events"] = {
        "Nightly": {"Type": "Schedule", "Properties": {"Schedule": "rate(1 day)"}}
    }
    function["EventInvokeConfig"] = {"MaximumRetryAttempts": 0}
    changed["Resources"]["DriftFunction"] = copy.deepcopy(changed["Resources"][function_id])
    changed["Resources"]["DriftFunction"]["Properties"]["AutoPublishAlias"] = "live"
    changed["Globals"] = {"Function": {"CodeUri": function.pop("CodeUri")}}
    changed["Resources"]["AuditTopic"] = {"Type": "AWS::SNS::Topic"}
    changed["Outputs"]["AuditTopicArn"] = {
        "Value": {"Ref": "AuditTopic"},
        "Export": {"Name": {"Fn::Join": ["-", [{"Ref": "AWS::StackName"}, "AuditTopicArn"]]}},
    }
    changed["Outputs"]["DriftFunctionArn"] = {
        "Value": {"Fn::GetAtt": ["DriftFunction", "Arn"]},
        "Export": {
            "Name": {"Fn::Sub": ["${Stack}-DriftFunctionArn", {"Stack": {"Ref": "AWS::StackName"}}]}
        },
    }
    (tmp_path / "template.json").write_text(json.dumps(changed))
    (tmp_path / "src").symlink_to(ROOT / "src")
    build = tmp_path / "build"
    shutil.copytree(BUILD, build)
    shutil.copytree(BUILD / function_id, build / "DriftFunction")

    result = generate(tmp_path / "out", tmp_path / "template.json", build)

    assert_same_as_reference(result, changed)
    types = {r["Type"] for r in result.template["Resources"].values()}
    assert {"AWS::SNS::Topic", "AWS::Events::Rule", "AWS::Lambda::EventInvokeConfig"} <= types
    assert {"AWS::Lambda::Version", "AWS::Lambda::Alias"} <= types
    keys = result.function_keys()
    assert set(keys) == {function_id, "DriftFunction"}
    assert len(set(keys.values())) == 1  # same code, same key
    names = {
        evaluate(o["Export"]["Name"], {"ExportPrefix": "p"})
        for o in result.template["Outputs"].values()
        if "Export" in o
    }
    assert {"p-AuditTopicArn", "p-DriftFunctionArn"} <= names
    assert "ExportPrefix" not in json.dumps(result.template["Resources"])  # exports only
    assert lint(result.text) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda t: t["Outputs"].update(
                Fixed={"Value": "x", "Export": {"Name": "jets-deploy-iam-fixed"}}
            ),
            "Output Fixed exports",
        ),
        (
            lambda t: t["Resources"].update(
                Layer={
                    "Type": "AWS::Serverless::LayerVersion",
                    "Properties": {"ContentUri": "layer/"},
                }
            ),
            "Layer (AWS::Serverless::LayerVersion) has a local ContentUri",
        ),
        (
            lambda t: t["Parameters"].update(HomeRegion={"Type": "String"}),
            "already declares HomeRegion",
        ),
        (
            lambda t: t["Resources"].update(
                Node={
                    "Type": "AWS::Serverless::Function",
                    "Properties": {"CodeUri": "src/", "Handler": "i.h", "Runtime": "nodejs22.x"},
                }
            ),
            "Node: runtime nodejs22.x: only python builds are packaged",
        ),
    ],
    ids=["export-not-from-stack-name", "local-layer", "parameter-clash", "not-python"],
)
def test_what_cannot_be_generated_is_refused_by_name(
    tmp_path: Path, source: dict[str, Any], change: Any, reason: str
) -> None:
    changed = copy.deepcopy(source)
    change(changed)
    (tmp_path / "template.json").write_text(json.dumps(changed))
    (tmp_path / "src").symlink_to(ROOT / "src")
    done = run_generator(tmp_path / "out", tmp_path / "template.json")
    assert done.returncode == 1
    assert reason in done.stderr
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# The zip


def test_build_is_reproducible_even_from_a_dirty_build_directory(
    generated: Generated, tmp_path: Path
) -> None:
    """Same template and same zip bytes (hence key) from a second build, and from a copy of the
    build output with other timestamps and modes, bytecode and stray files in it."""
    again = generate(tmp_path / "again")
    assert again.text == generated.text
    assert again.zips == generated.zips

    dirty = tmp_path / "dirty"
    shutil.copytree(BUILD, dirty)
    now = time.time()
    for index, path in enumerate(sorted(dirty.rglob("*"), reverse=True)):
        os.utime(path, (now - index * 7919, now - index * 7919))
        if path.is_file():
            path.chmod(0o755 if index % 2 else 0o600)
    for function_dir in (p for p in dirty.iterdir() if p.is_dir()):
        for package in (p for p in function_dir.iterdir() if p.is_dir()):
            (package / "__pycache__").mkdir(exist_ok=True)
            (package / "__pycache__" / "stale.cpython-313.pyc").write_bytes(os.urandom(64))
        (function_dir / "stray.pyc").write_bytes(os.urandom(16))
        (function_dir / "notes.txt").write_text("not imported")
        (function_dir / "bin").mkdir()
        (function_dir / "bin" / "tool").write_text("#!/bin/sh\n")

    from_dirty = generate(tmp_path / "from-dirty", build_dir=dirty)
    assert from_dirty.text == generated.text
    assert from_dirty.zips == generated.zips


def test_zip_entries_are_normalised(generated: Generated) -> None:
    for data in generated.zips.values():
        infos = zipfile.ZipFile(io.BytesIO(data)).infolist()
        names = [info.filename for info in infos]
        assert names == sorted(names)
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in infos)
        assert all(info.external_attr >> 16 == 0o100644 for info in infos)
        assert not any(info.is_dir() for info in infos)
        assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)


def test_dist_holds_exactly_the_zips_the_template_points_at(generated: Generated) -> None:
    keys = set(generated.function_keys().values())
    assert set(generated.zips) == keys
    for key, data in generated.zips.items():
        assert key == hashlib.sha256(data).hexdigest() + ".zip"


def test_zip_holds_the_handler_package_and_only_what_the_function_imports(
    generated: Generated, tmp_path: Path
) -> None:
    assert RUNTIME_PYTHON.exists(), "no runtime venv: run `make test`"
    for logical_id, key in generated.function_keys().items():
        archive = zipfile.ZipFile(io.BytesIO(generated.zips[key]))
        names = [PurePosixPath(name) for name in archive.namelist()]
        tops = {n.parts[0] for n in names}
        modules = {t.removesuffix(".py") for t in tops if not t.endswith(".dist-info")}
        assert not {"jets_deploy_iam_cli", "tests", "boto3", "botocore", "moto", "pytest"} & modules

        extracted = tmp_path / logical_id
        archive.extractall(extracted)
        handler = generated.template["Resources"][logical_id]["Properties"]["Handler"]
        imported = subprocess.run(
            [str(RUNTIME_PYTHON), "-c", IMPORTED_FROM_ZIP, handler.rsplit(".", 1)[0],
             str(extracted)],
            env={**os.environ, "PYTHONPATH": str(extracted), "PYTHONNOUSERSITE": "1",
                 "PYTHONDONTWRITEBYTECODE": "1"},
            cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        assert set(json.loads(imported.stdout)) == modules

        for dist_info in (t for t in tops if t.endswith(".dist-info")):
            record = archive.read(f"{dist_info}/RECORD").decode()
            paths = [line.split(",")[0] for line in record.splitlines()]
            shipped = {path.split("/")[0].removesuffix(".py") for path in paths}
            assert shipped & modules, f"{dist_info} belongs to nothing the function imports"

    package = ROOT / "src" / "function" / "jets_deploy_iam"
    key = next(iter(generated.function_keys().values()))
    archive = zipfile.ZipFile(io.BytesIO(generated.zips[key]))
    in_zip = {n: archive.read(n) for n in archive.namelist() if n.startswith("jets_deploy_iam/")}
    in_source = {
        f"jets_deploy_iam/{p.relative_to(package).as_posix()}": p.read_bytes()
        for p in package.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert in_zip == in_source


@pytest.mark.parametrize("damage", ["edited-source", "module-gone-from-source", "no-build"])
def test_a_stale_build_is_refused(generated: Generated, tmp_path: Path, damage: str) -> None:
    function_id, _ = next(iter(generated.function_keys().items()))
    build = tmp_path / "build"
    shutil.copytree(BUILD, build)
    package = build / function_id / "jets_deploy_iam"
    if damage == "edited-source":
        with (package / "handler.py").open("a") as handler:
            handler.write("# edited after sam build\n")
    elif damage == "module-gone-from-source":
        (package / "obsolete.py").write_text("")
    else:
        shutil.rmtree(build / function_id)
    done = run_generator(tmp_path / "out", build_dir=build)
    assert done.returncode == 1
    assert "run `sam build`" in done.stderr
    assert not (tmp_path / "out" / "template.json").exists()


# ---------------------------------------------------------------------------------------------
# The artifact bucket and the upload


def test_artifact_bucket_is_private_to_the_organizations_stacksets_roles() -> None:
    template = load_source(BUCKET_TEMPLATE)
    bucket = template["Resources"]["ArtifactBucket"]
    assert bucket["DeletionPolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    properties = bucket["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(properties["PublicAccessBlockConfiguration"].values())
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert not any(
        "Expiration" in json.dumps(rule) for rule in properties["LifecycleConfiguration"]["Rules"]
    )

    statements = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ]
    allows = [s for s in statements if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Action"] == "s3:GetObject"
    assert allow["Condition"]["StringEquals"] == {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}
    role_pattern = allow["Condition"]["ArnLike"]["aws:PrincipalArn"]["Fn::Sub"]
    assert role_pattern == "arn:${AWS::Partition}:iam::*:role/${ExecutionRoleName}"
    assert template["Parameters"]["ExecutionRoleName"]["Default"] == "stacksets-exec-*"
    denies = {s["Sid"]: s for s in statements if s["Effect"] == "Deny"}
    assert denies["TlsOnly"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert denies["TlsOnly"]["Action"] == "s3:*"
    assert {"s3:DeleteObject", "s3:DeleteObjectVersion"} <= set(
        denies["KeepEveryVersion"]["Action"]
    )


@mock_aws
def test_upload_adds_and_never_replaces_or_deletes(generated: Generated, tmp_path: Path) -> None:
    s3 = boto3.client("s3", region_name=HOME)
    bucket = f"jets-deploy-iam-111122223333-{HOME}"
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": HOME})
    previous_release = "0" * 64 + ".zip"
    s3.put_object(Bucket=bucket, Key=previous_release, Body=b"the code a rollback needs")
    args = ["--bucket-prefix", "jets-deploy-iam-111122223333", "--region", HOME,
            "--template", str(generated.out / "template.json"),
            "--dist", str(generated.out / "dist")]  # fmt: skip

    assert upload.main(args) == 0
    assert upload.main(args) == 0  # already there: nothing put again
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {previous_release, *generated.zips}
    for key, data in generated.zips.items():
        assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == data
        assert len(s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])) == 1

    tampered = tmp_path / "dist"
    shutil.copytree(generated.out / "dist", tampered)
    for path in tampered.iterdir():
        path.write_bytes(path.read_bytes() + b"\0")
    assert upload.main([*args[:-1], str(tampered)]) == 1

    key = next(iter(generated.zips))
    s3.put_object(Bucket=bucket, Key=key, Body=b"something else under that key")
    assert upload.main(args) == 1
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"something else under that key"

    assert upload.main([*args[:3], "us-west-2", *args[4:]]) == 1  # no bucket in that region


# ---------------------------------------------------------------------------------------------
# A service-managed stack set, on moto


def without_custom_resources(template: dict[str, Any]) -> dict[str, Any]:
    """moto cannot run a Lambda-backed custom resource (it would invoke the function in a
    container), so the smoke test leaves out Custom::* resources and the outputs that read them."""
    result = copy.deepcopy(template)
    custom = {k for k, r in result["Resources"].items() if r["Type"].startswith("Custom::")}
    assert custom, "expected the Custom::JetsDeployGroup resource"
    for logical_id in custom:
        del result["Resources"][logical_id]
    for resource in result["Resources"].values():
        depends = resource.get("DependsOn")
        assert not (set([depends] if isinstance(depends, str) else depends or []) & custom)
    result["Outputs"] = {
        name: output
        for name, output in result.get("Outputs", {}).items()
        if not any(f'"{logical_id}' in json.dumps(output["Value"]) for logical_id in custom)
    }
    return result


def member_client(service: str, account: str) -> Any:
    """A client acting in a member account (moto maps assumed-role credentials to it)."""
    sts = boto3.client("sts", region_name=HOME)
    role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="smoke")["Credentials"]
    return boto3.client(
        service,
        region_name=HOME,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


@pytest.mark.filterwarnings("ignore:Tried to parse AWS..S3..BucketPolicy:UserWarning")
@mock_aws
def test_service_managed_stack_set_deploys_to_every_account_of_an_ou(generated: Generated) -> None:
    """The bucket stack in the management account, the upload, a SERVICE_MANAGED stack set
    and instances in the home region of an OU's two accounts: each account gets the function
    with exactly the uploaded code (moto resolves the template's bucket name and reads the
    object), its role and log group, and the ServiceToken export under ExportPrefix.

    Not shown here (moto does not model it): the custom resource, bucket policy enforcement, the
    HomeRegion rule, per-account parameter overrides, auto-deployment to accounts added later."""
    org = boto3.client("organizations", region_name="us-east-1")
    org_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = org.list_roots()["Roots"][0]["Id"]
    ou = org.create_organizational_unit(ParentId=root, Name="jets")["OrganizationalUnit"]["Id"]
    accounts = []
    for name in ("shop-dev", "shop-prod"):
        status = org.create_account(AccountName=name, Email=f"{name}@example.com")
        account = status["CreateAccountStatus"]["AccountId"]
        org.move_account(AccountId=account, SourceParentId=root, DestinationParentId=ou)
        accounts.append(account)

    cfn = boto3.client("cloudformation", region_name=HOME)
    cfn.create_stack(
        StackName="jets-deploy-iam-artifacts",
        TemplateBody=BUCKET_TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": "OrganizationId", "ParameterValue": org_id}],
    )
    outputs = cfn.describe_stacks(StackName="jets-deploy-iam-artifacts")["Stacks"][0]["Outputs"]
    prefix = next(o["OutputValue"] for o in outputs if o["OutputKey"] == "ArtifactBucketPrefix")
    assert upload.main(["--bucket-prefix", prefix, "--region", HOME,
                        "--template", str(generated.out / "template.json"),
                        "--dist", str(generated.out / "dist")]) == 0  # fmt: skip

    cfn.create_stack_set(
        StackSetName="jets-deploy-iam",
        TemplateBody=json.dumps(without_custom_resources(generated.template)),
        PermissionModel="SERVICE_MANAGED",
        AutoDeployment={"Enabled": True, "RetainStacksOnAccountRemoval": True},
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[
            {"ParameterKey": "ArtifactBucketPrefix", "ParameterValue": prefix},
            {"ParameterKey": "HomeRegion", "ParameterValue": HOME},
        ],
    )
    cfn.create_stack_instances(
        StackSetName="jets-deploy-iam",
        DeploymentTargets={"OrganizationalUnitIds": [ou]},
        Regions=[HOME],
    )

    instances = cfn.list_stack_instances(StackSetName="jets-deploy-iam")["Summaries"]
    assert sorted(i["Account"] for i in instances) == sorted(accounts)
    assert {i["Region"] for i in instances} == {HOME}
    code_sha = {
        base64.b64encode(hashlib.sha256(d).digest()).decode() for d in generated.zips.values()
    }
    for account in accounts:
        functions = member_client("lambda", account).list_functions()["Functions"]
        assert len(functions) == len(generated.function_keys())
        for function in functions:
            assert function["CodeSha256"] in code_sha
            assert function["Runtime"] == "python3.13"
            assert function["Role"].startswith(f"arn:aws:iam::{account}:role/")
        assert member_client("iam", account).list_roles()["Roles"]
        groups = member_client("logs", account).describe_log_groups()["logGroups"]
        assert any(g["logGroupName"].startswith("/aws/lambda/") for g in groups)

    # moto keeps service-managed instances' stacks out of the member accounts' stack lists, so
    # their exports are read from its model.
    from moto.cloudformation.models import cloudformation_backends

    management = boto3.client("sts", region_name=HOME).get_caller_identity()["Account"]
    stack_set = cloudformation_backends[management][HOME].describe_stack_set("jets-deploy-iam")
    for instance in stack_set.instances.stack_instances:
        exports = {export.name: export.value for export in instance.stack.exports}
        assert exports["jets-deploy-iam-ServiceToken"].startswith(
            f"arn:aws:lambda:{HOME}:{instance.account_id}:function:"
        )
