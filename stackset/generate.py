"""Generate the StackSet template and its code artifacts from template.yaml and `sam build`.

Service-managed StackSets reject templates with a Transform, and a Lambda function loads its code
only from a bucket in its own region. So this turns the one SAM template into a plain
CloudFormation template whose function code is an S3 object `<ArtifactBucketPrefix>-<region>`,
key `<sha256>.zip`, and writes that zip next to it:

    stackset/template.json          the StackSet template (generated: never edit it)
    stackset/dist/<sha256>.zip      one deterministic zip per function

Nothing here knows which resources, parameters or outputs template.yaml declares: every
`AWS::Serverless::Function` with local code gets its zip, the SAM translator (the one the SAM CLI
carries, run offline) does the rest, and the StackSet changes are applied to whatever it produced.

Run it with the SAM CLI's Python, which carries samtranslator (`make stackset` does):

    .venv-sam/bin/python stackset/generate.py [--template T] [--build-dir D] [--out O]
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any, cast

ROOT = Path(__file__).resolve().parent.parent

# The artifact bucket: one per region, named by a prefix that holds the management account's id.
ARTIFACT_BUCKET: dict[str, Any] = {"Fn::Sub": "${ArtifactBucketPrefix}-${AWS::Region}"}

# What the translator sees instead of ARTIFACT_BUCKET: a literal it cannot resolve. (SAM
# resolves ${AWS::Region} in the code location of a function with AutoPublishAlias, which would
# pin the translating region into the template.) Swapped for ARTIFACT_BUCKET afterwards.
BUCKET_PLACEHOLDER = "artifact-bucket-placeholder-for-stackset-generate"

# What changes under StackSets, as parameters of the generated template.
STACKSET_PARAMETERS: dict[str, dict[str, Any]] = {
    "ArtifactBucketPrefix": {
        "Type": "String",
        # 63 characters per bucket name, minus "-" and the longest region name.
        "AllowedPattern": "^[a-z0-9][a-z0-9-]{1,46}$",
        "ConstraintDescription": "2-47 of a-z 0-9 -: the bucket stack's ArtifactBucketPrefix",
        "Description": (
            "Code bucket prefix: the function loads <sha256>.zip from <prefix>-<region>, a bucket "
            "of the management (or delegated admin) account (stackset/artifact-bucket.yaml)."
        ),
    },
    "ExportPrefix": {
        # Default: samconfig.toml's stack name, so the exports are those of a `sam deploy` stack.
        "Type": "String",
        "AllowedPattern": "^[A-Za-z0-9][A-Za-z0-9:-]{0,199}$",
        "ConstraintDescription": "letters, digits, colons and hyphens",
        "Description": (
            "Exports are named <ExportPrefix>-<name> (stack instances are named "
            "StackSet-<set>-<uuid>, so stack-name based exports could not be imported)."
        ),
    },
    "HomeRegion": {
        "Type": "String",
        "AllowedPattern": "^[a-z]{2}(-[a-z]+)+-[0-9]+$",
        "ConstraintDescription": "a region name such as eu-west-1",
        "Description": (
            "The one region per account where the stack may run (IAM is global: an instance in "
            "any other region fails)."
        ),
    },
}
HOME_REGION_RULE = "OnlyInHomeRegion"
HOME_REGION_ASSERTION: dict[str, Any] = {
    "Assert": {"Fn::Equals": [{"Ref": "AWS::Region"}, {"Ref": "HomeRegion"}]},
    "AssertDescription": (
        "IAM is global: deploy this stack only in HomeRegion (one stack instance per account)."
    ),
}
GENERATED_NOTE = " [StackSet template generated from template.yaml by stackset/generate.py.]"

# Regions the translation runs in: its output must not depend on the region (the one template
# serves every home region).
TRANSLATION_REGIONS = ("us-east-1", "eu-west-1")
# `create-stack-set --template-body` accepts at most this many bytes.
TEMPLATE_BODY_LIMIT = 51_200

# Deterministic zip entries: the earliest date a zip can hold, one regular-file mode.
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_ATTR = (0o100644 & 0xFFFF) << 16
ZIP_CREATE_SYSTEM_UNIX = 3
BYTECODE = frozenset({".pyc", ".pyo"})
NATIVE_MODULES = frozenset({".py", ".so", ".pyd"})

# SAM properties that may name local files, and which of them this generator packages.
SERVERLESS_FUNCTION = "AWS::Serverless::Function"
UNSUPPORTED_LOCAL_ARTIFACTS = {
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
    "AWS::Serverless::Application": "Location",
    "AWS::Serverless::GraphQLApi": "SchemaUri",
}


class GenerateError(Exception):
    """A reason the StackSet artifacts cannot be generated, worded for the person running it."""


@dataclass(frozen=True)
class Artifact:
    """One function's code: the zip's bytes and the S3 key derived from them."""

    logical_id: str
    data: bytes

    @property
    def key(self) -> str:
        """The S3 key is the zip's SHA-256: a new build never overwrites what a rollback needs."""
        return hashlib.sha256(self.data).hexdigest() + ".zip"


# ---------------------------------------------------------------------------------------------
# Reading the SAM template


def load_template(path: Path) -> dict[str, Any]:
    """Parse YAML with CloudFormation's short forms (!Sub, !GetAtt...) the way SAM does."""
    from samtranslator.yaml_helper import yaml_parse

    template = yaml_parse(path.read_text())
    if not isinstance(template, dict) or not isinstance(template.get("Resources"), dict):
        raise GenerateError(f"{path}: not a template with Resources")
    return cast(dict[str, Any], template)


def is_local(uri: Any) -> bool:
    """A code location SAM would have to package: a path, not an S3 object or URI."""
    return isinstance(uri, str) and not uri.startswith("s3://")


def function_property(template: dict[str, Any], resource: dict[str, Any], name: str) -> Any:
    """A function's effective property (CodeUri, Runtime): its own, else the one from Globals."""
    properties = resource.get("Properties") or {}
    if name in properties:
        return properties[name]
    return ((template.get("Globals") or {}).get("Function") or {}).get(name)


def local_functions(template: dict[str, Any], base: Path) -> dict[str, Path]:
    """Logical id -> local code directory (relative paths from `base`, the template's directory)
    of every serverless function that needs a zip.

    Anything else SAM would package from a local path is refused rather than shipped broken.
    """
    functions: dict[str, Path] = {}
    for logical_id, resource in template["Resources"].items():
        kind = resource.get("Type")
        properties = resource.get("Properties") or {}
        if kind in UNSUPPORTED_LOCAL_ARTIFACTS:
            prop = UNSUPPORTED_LOCAL_ARTIFACTS[kind]
            if is_local(properties.get(prop)):
                raise GenerateError(
                    f"{logical_id} ({kind}) has a local {prop}; only function code is "
                    "packaged for StackSets: extend stackset/generate.py or use an S3 location"
                )
        if kind != SERVERLESS_FUNCTION:
            continue
        if properties.get("PackageType") == "Image":
            raise GenerateError(f"{logical_id}: image functions are not packaged for StackSets")
        uri = function_property(template, resource, "CodeUri")
        if not is_local(uri):
            continue
        runtime = function_property(template, resource, "Runtime")
        if not (isinstance(runtime, str) and runtime.startswith("python")):
            raise GenerateError(
                f"{logical_id}: runtime {runtime}: only python builds are packaged (the build "
                "freshness check knows the pip builder's copy rules only)"
            )
        functions[logical_id] = (base / uri).resolve()
    return functions


# ---------------------------------------------------------------------------------------------
# The deterministic zip


def is_bytecode(rel: PurePosixPath) -> bool:
    """Bytecode is written by whoever ran the build or imported from it: never reproducible."""
    return "__pycache__" in rel.parts or rel.suffix in BYTECODE


def has_module(directory: Path) -> bool:
    """A directory is a package only if it holds a module (not, say, a bin/ of scripts)."""
    return any(p.suffix in NATIVE_MODULES for p in directory.rglob("*") if p.is_file())


def bundled_entries(build_dir: Path) -> list[Path]:
    """The top-level entries of a function's build directory that belong in its zip.

    Kept: importable top-level modules and packages, and the packages' .dist-info (their
    licenses travel with the code). Left out: top-level files nothing imports (requirements.txt,
    the wheels' *.data scripts).
    """
    entries = []
    for entry in build_dir.iterdir():
        if entry.is_file():
            keep = entry.suffix in NATIVE_MODULES
        else:
            keep = entry.name.endswith(".dist-info") or (
                entry.name.isidentifier() and has_module(entry)
            )
        if keep:
            entries.append(entry)
    return entries


def bundle_files(build_dir: Path) -> list[tuple[str, Path]]:
    """The files to zip as (archive name, path), sorted: the zip never depends on listing order."""
    files = []
    for entry in bundled_entries(build_dir):
        for path in [entry] if entry.is_file() else entry.rglob("*"):
            rel = PurePosixPath(path.relative_to(build_dir).as_posix())
            if path.is_file() and not is_bytecode(rel):
                files.append((str(rel), path))
    return sorted(files)


def deterministic_zip(files: list[tuple[str, Path]]) -> bytes:
    """Zip files with fixed timestamps, modes and order: the same files give the same bytes.

    The bytes still depend on zlib's deflate output, which is stable for a given zlib build;
    another machine may produce another (equally valid) key.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, path in files:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.external_attr = ZIP_FILE_ATTR
            info.create_system = ZIP_CREATE_SYSTEM_UNIX
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    return buffer.getvalue()


def builder_excludes() -> tuple[str, ...]:
    """The name patterns `sam build` leaves out when it copies a python function's source.

    Taken from the builder itself (aws-lambda-builders, in the SAM CLI's venv), not copied.
    """
    from aws_lambda_builders.workflows.python_pip.workflow import PythonPipWorkflow

    return tuple(str(pattern) for pattern in PythonPipWorkflow.EXCLUDED_FILES)


def copied_files(directory: Path, excludes: tuple[str, ...]) -> set[PurePosixPath]:
    """Files of a tree as `sam build` copies them: no part of the path matches an exclusion."""
    files = set()
    for path in directory.rglob("*"):
        rel = PurePosixPath(path.relative_to(directory).as_posix())
        excluded = any(fnmatch(part, pattern) for part in rel.parts for pattern in excludes)
        if path.is_file() and not excluded:
            files.add(rel)
    return files


def check_build_is_fresh(logical_id: str, source: Path, build: Path) -> None:
    """Refuse a build directory that does not hold the current source (run `sam build`).

    Every source file `sam build` copies must be there with the same bytes, and the source's
    packages must have no extra module (a file deleted since the build would otherwise ship).
    """
    if not build.is_dir():
        raise GenerateError(f"{logical_id}: no build output at {build}: run `sam build`")
    excludes = builder_excludes()
    for rel in sorted(copied_files(source, excludes)):
        built = build / rel
        if not built.is_file() or built.read_bytes() != (source / rel).read_bytes():
            raise GenerateError(f"{logical_id}: {built} is stale: run `sam build`")
    for top in sorted(p for p in source.iterdir() if p.is_dir()):
        extra = copied_files(build / top.name, excludes) - copied_files(top, excludes)
        if extra:
            raise GenerateError(
                f"{logical_id}: {build / top.name} holds {sorted(map(str, extra))[0]}, which "
                "is not in the source: run `sam build`"
            )


def build_artifacts(template: dict[str, Any], base: Path, build_dir: Path) -> list[Artifact]:
    """One deterministic zip per function with local code, from its `sam build` directory."""
    artifacts = []
    for logical_id, source in sorted(local_functions(template, base).items()):
        built = build_dir / logical_id
        check_build_is_fresh(logical_id, source, built)
        artifacts.append(Artifact(logical_id, deterministic_zip(bundle_files(built))))
    return artifacts


# ---------------------------------------------------------------------------------------------
# Translating


def with_s3_code(template: dict[str, Any], artifacts: list[Artifact]) -> dict[str, Any]:
    """A copy of the template whose functions load their code from S3 (the placeholder bucket)."""
    result = copy.deepcopy(template)
    for artifact in artifacts:
        properties = result["Resources"][artifact.logical_id].setdefault("Properties", {})
        properties["CodeUri"] = {"Bucket": BUCKET_PLACEHOLDER, "Key": artifact.key}
    return result


def refuse_managed_policy_lookup() -> dict[str, str]:
    """Offline there is no IAM to turn managed policy names into ARNs."""
    raise GenerateError("the template names a managed policy by name; use its ARN")


def translate(template: dict[str, Any], region: str) -> dict[str, Any]:
    """Run the SAM transform offline, as CloudFormation would run it for `region`."""
    import boto3
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    try:
        result = translator.translate(
            copy.deepcopy(template), {}, get_managed_policy_map=refuse_managed_policy_lookup
        )
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause.message) for cause in error.causes)
        raise GenerateError(f"SAM translation failed: {causes}") from error
    finally:
        translator.metrics.publish()  # a dummy publisher: keeps it from warning at exit
    return cast(dict[str, Any], result)


def translate_region_independently(template: dict[str, Any]) -> dict[str, Any]:
    """Translate once per region in TRANSLATION_REGIONS and insist the results are equal."""
    first, *others = (translate(template, region) for region in TRANSLATION_REGIONS)
    for other in others:
        if other != first:
            differ = sorted(
                logical_id
                for logical_id in set(first["Resources"]) | set(other["Resources"])
                if first["Resources"].get(logical_id) != other["Resources"].get(logical_id)
            )
            raise GenerateError(
                f"the translation differs between {', '.join(TRANSLATION_REGIONS)} "
                f"({', '.join(differ) or 'outside Resources'}): one StackSet template cannot "
                "serve every home region"
            )
    return first


def with_artifact_bucket(value: Any) -> Any:
    """The translated value with the bucket placeholder replaced by the artifact bucket."""
    if value == BUCKET_PLACEHOLDER:
        return copy.deepcopy(ARTIFACT_BUCKET)
    if isinstance(value, list):
        return [with_artifact_bucket(item) for item in value]
    if isinstance(value, dict):
        return {key: with_artifact_bucket(item) for key, item in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# What changes under StackSets


def samconfig_stack_name(template_dir: Path) -> str | None:
    """The stack name `sam deploy` uses (samconfig.toml next to the template), if any.

    ExportPrefix defaults to it: a consumer stack imports the same names whether the account
    got its stack from `sam deploy` or from the StackSet.
    """
    path = template_dir / "samconfig.toml"
    if not path.is_file():
        return None
    config = tomllib.loads(path.read_text()).get("default", {})
    for command in ("deploy", "global"):
        name = config.get(command, {}).get("parameters", {}).get("stack_name")
        if isinstance(name, str):
            return name
    return None


def add_parameters(template: dict[str, Any], export_prefix: str | None) -> None:
    """Declare the StackSet parameters (and show them in the console's parameter groups)."""
    parameters = template.setdefault("Parameters", {})
    clash = sorted(set(parameters) & set(STACKSET_PARAMETERS))
    if clash:
        raise GenerateError(f"template.yaml already declares {', '.join(clash)}")
    parameters.update(copy.deepcopy(STACKSET_PARAMETERS))
    if export_prefix is not None:
        parameters["ExportPrefix"]["Default"] = export_prefix
    interface = (template.get("Metadata") or {}).get("AWS::CloudFormation::Interface")
    if isinstance(interface, dict):
        interface.setdefault("ParameterGroups", []).append(
            {"Label": {"default": "StackSet"}, "Parameters": list(STACKSET_PARAMETERS)}
        )


def add_home_region_rule(template: dict[str, Any]) -> None:
    """A template rule that fails any stack instance outside HomeRegion (IAM is global)."""
    rules = template.setdefault("Rules", {})
    if HOME_REGION_RULE in rules:
        raise GenerateError(f"template.yaml already declares the rule {HOME_REGION_RULE}")
    rules[HOME_REGION_RULE] = {"Assertions": [copy.deepcopy(HOME_REGION_ASSERTION)]}


def stack_name_to_export_prefix(value: Any) -> Any:
    """The value with every reference to the stack's name turned into one to ExportPrefix."""
    if isinstance(value, list):
        return [stack_name_to_export_prefix(item) for item in value]
    if not isinstance(value, dict):
        return value
    if value == {"Ref": "AWS::StackName"}:
        return {"Ref": "ExportPrefix"}
    if set(value) == {"Fn::Sub"}:
        sub = value["Fn::Sub"]
        if isinstance(sub, str):
            return {"Fn::Sub": sub.replace("${AWS::StackName}", "${ExportPrefix}")}
        if isinstance(sub, list) and sub and isinstance(sub[0], str):
            text = sub[0].replace("${AWS::StackName}", "${ExportPrefix}")
            return {"Fn::Sub": [text, *stack_name_to_export_prefix(sub[1:])]}
    return {key: stack_name_to_export_prefix(item) for key, item in value.items()}


def rewrite_exports(template: dict[str, Any]) -> None:
    """Name every export under ExportPrefix instead of the (unpredictable) stack name.

    An export whose name does not derive from the stack name is refused: it would collide
    between two stacks of one account and cannot be moved under the prefix without a decision.
    """
    for name, output in (template.get("Outputs") or {}).items():
        if "Export" not in output:
            continue
        before = output["Export"]["Name"]
        after = stack_name_to_export_prefix(before)
        if after == before:
            raise GenerateError(
                f"Output {name} exports {json.dumps(before)}, which does not derive from "
                "AWS::StackName; name it ${AWS::StackName}-... in template.yaml"
            )
        output["Export"]["Name"] = after


def check_plain_cloudformation(template: dict[str, Any]) -> None:
    """The result must be something a service-managed StackSet accepts: no transform at all."""
    if "Transform" in template:
        raise GenerateError("the translated template still has a Transform")
    serverless = sorted(
        logical_id
        for logical_id, resource in template["Resources"].items()
        if str(resource.get("Type", "")).startswith("AWS::Serverless::")
    )
    if serverless:
        raise GenerateError(f"untranslated SAM resources: {', '.join(serverless)}")


def stackset_template(
    template: dict[str, Any], artifacts: list[Artifact], export_prefix: str | None
) -> dict[str, Any]:
    """template.yaml, translated, with the StackSet parameters, exports and home-region rule."""
    translated = translate_region_independently(with_s3_code(template, artifacts))
    result = cast(dict[str, Any], with_artifact_bucket(translated))
    if BUCKET_PLACEHOLDER in json.dumps(result):
        raise GenerateError("the translation embedded the code bucket in another value")
    check_plain_cloudformation(result)
    add_parameters(result, export_prefix)
    rewrite_exports(result)
    add_home_region_rule(result)
    description = str(result.get("Description", "jets-deploy-iam"))
    if len(description + GENERATED_NOTE) <= 1024:
        result["Description"] = description + GENERATED_NOTE
    return result


# ---------------------------------------------------------------------------------------------
# Writing


def render(template: dict[str, Any]) -> str:
    """The template as written: stable key order (the translator's), two-space JSON."""
    return json.dumps(template, indent=2) + "\n"


def write_outputs(out_dir: Path, template_text: str, artifacts: list[Artifact]) -> None:
    """Write template.json and dist/<sha256>.zip; zips of earlier builds are removed locally
    (never from S3, where rollbacks still need them)."""
    dist = out_dir / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    keys = {artifact.key for artifact in artifacts}
    for old in dist.glob("*.zip"):
        if old.name not in keys:
            old.unlink()
    for artifact in artifacts:
        (dist / artifact.key).write_bytes(artifact.data)
    (out_dir / "template.json").write_text(template_text)


def generate(template_path: Path, build_dir: Path) -> tuple[str, list[Artifact]]:
    """The StackSet template's text and the code artifacts it points at."""
    template = load_template(template_path)
    base = template_path.resolve().parent
    artifacts = build_artifacts(template, base, build_dir)
    return render(stackset_template(template, artifacts, samconfig_stack_name(base))), artifacts


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command line: where the SAM template, the build output and the results are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--template", type=Path, default=ROOT / "template.yaml")
    parser.add_argument("--build-dir", type=Path, default=ROOT / ".aws-sam" / "build")
    parser.add_argument("--out", type=Path, default=ROOT / "stackset")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Generate, write, and say what was written (sizes, keys) or why nothing was."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        text, artifacts = generate(args.template, args.build_dir)
    except GenerateError as error:
        print(f"stackset: {error}", file=sys.stderr)
        return 1
    write_outputs(args.out, text, artifacts)
    size = len(text.encode())
    print(f"{args.out / 'template.json'}: {size} bytes")
    if size > TEMPLATE_BODY_LIMIT:
        print(f"  over {TEMPLATE_BODY_LIMIT} bytes: use --template-url, not --template-body")
    for artifact in artifacts:
        path = args.out / "dist" / artifact.key
        print(f"{path}: {len(artifact.data)} bytes ({artifact.logical_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
