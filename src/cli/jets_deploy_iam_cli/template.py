"""A deployed template's resource properties, worked out the way CloudFormation works them out.

``plan --stack`` must show the request a deploy would send, and CloudFormation sends a custom
resource its properties with every intrinsic function already resolved. So the properties are
read from the stack's own template (GetTemplate) and resolved here against the stack's
parameters: ``Ref`` (parameters, pseudo parameters, other resources' physical ids),
``Fn::If`` with the template's conditions (``Fn::Equals``/``Not``/``And``/``Or``/``Condition``),
``AWS::NoValue``, ``Fn::Sub``, ``Fn::Join``, ``Fn::Split``, ``Fn::Select``, ``Fn::FindInMap``,
``Fn::ImportValue`` (the account's exports), ``Fn::Base64``, and ``Fn::GetAtt <function>.Arn``.

What cannot be known outside CloudFormation (another resource's attributes, a NoEcho parameter's
value, an SSM parameter's next value) raises ``UnresolvedError`` naming it: a preview built on a
guess would be worse than none.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

#: What ``Ref: AWS::NoValue`` evaluates to: the property (or list entry) is left out.
NO_VALUE = object()
#: DescribeStacks shows a NoEcho parameter's value as this.
MASKED = "****"
LAMBDA_TYPES = frozenset({"AWS::Lambda::Function", "AWS::Serverless::Function"})


class UnresolvedError(Exception):
    """A value only CloudFormation can know; the message says which and why."""


class TemplateError(Exception):
    """The template cannot be read at all."""


# -- reading -------------------------------------------------------------------------------


class _CfnLoader(yaml.SafeLoader):
    """YAML as CloudFormation reads it: short-form tags (``!Ref``, ``!If``...) and no implicit
    dates (``Version: 2012-10-17`` stays a string)."""


_CfnLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _short_form(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def load_template(body: str | Mapping[str, Any]) -> dict[str, Any]:
    """GetTemplate's TemplateBody (JSON or YAML text; boto3 decodes JSON bodies itself)."""
    if isinstance(body, Mapping):
        return dict(body)
    try:
        loaded = yaml.load(body, Loader=_CfnLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise TemplateError(f"the stack's template is neither JSON nor YAML: {error}") from error
    if not isinstance(loaded, dict):
        raise TemplateError("the stack's template is not a JSON/YAML object")
    return loaded


# -- resolving -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """A stack parameter as the template declares it and the stack holds it."""

    name: str
    type: str
    value: str
    no_echo: bool = False

    @property
    def is_list(self) -> bool:
        return self.type == "CommaDelimitedList" or self.type.startswith("List<")

    def resolved(self) -> Any:
        if self.no_echo and self.value == MASKED:
            raise UnresolvedError(
                f"parameter {self.name} is NoEcho (CloudFormation never shows its value): "
                f"pass it with --parameter-overrides {self.name}=..."
            )
        if self.type.startswith("AWS::SSM::Parameter::Value"):
            raise UnresolvedError(
                f"parameter {self.name} is read from SSM at deploy time ({self.value})"
            )
        return self.value.split(",") if self.is_list else self.value


@dataclass(frozen=True)
class Scope:
    """Everything a template's intrinsic functions may refer to, for one set of parameters."""

    template: Mapping[str, Any]
    parameters: Mapping[str, Parameter]
    #: AWS::StackName, AWS::StackId, AWS::Region, AWS::AccountId, AWS::Partition, AWS::URLSuffix
    pseudo: Mapping[str, str]
    #: logical id -> (resource type, physical id), for ``Ref`` and ``GetAtt <function>.Arn``
    resources: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: the account's exports, looked up only when an ``Fn::ImportValue`` needs them
    exports: Callable[[str], str | None] = lambda _name: None

    def resolve(self, value: Any) -> Any:
        """``value`` with every intrinsic function evaluated (NO_VALUE if it is AWS::NoValue)."""
        if isinstance(value, list):
            items = [self.resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            function = _FUNCTIONS.get(key)
            if function is not None:
                return function(self, argument)
            if key.startswith("Fn::"):
                raise UnresolvedError(f"{key} is not something this preview evaluates")
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not NO_VALUE}

    def condition(self, name: str) -> bool:
        conditions = self.template.get("Conditions") or {}
        if name not in conditions:
            raise UnresolvedError(f"condition {name} is not declared in the template")
        return _truth(self.resolve(conditions[name]), f"condition {name}")

    # -- the functions -----------------------------------------------------------------------

    def ref(self, name: Any) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            return self.parameters[name].resolved()
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.resources:
            physical = self.resources[name][1]
            if physical:
                return physical
            raise UnresolvedError(f"Ref {name}: the resource has no physical id yet")
        raise UnresolvedError(f"Ref {name}: neither a parameter nor a resource of the stack")

    def get_att(self, argument: Any) -> str:
        target = self.resolve(argument)
        if not (isinstance(target, list) and len(target) == 2):
            raise UnresolvedError(f"Fn::GetAtt {argument!r} is malformed")
        logical, attribute = (str(part) for part in target)
        kind, physical = self.resources.get(logical, ("", ""))
        if kind in LAMBDA_TYPES and attribute == "Arn" and physical:
            p = self.pseudo
            return (
                f"arn:{p['AWS::Partition']}:lambda:{p['AWS::Region']}:{p['AWS::AccountId']}"
                f":function:{physical}"
            )
        raise UnresolvedError(
            f"Fn::GetAtt {logical}.{attribute}: an attribute only CloudFormation knows"
        )

    def sub(self, argument: Any) -> str:
        text, variables = (
            (argument, {}) if isinstance(argument, str) else (argument[0], argument[1])
        )
        local = {k: self.resolve(v) for k, v in dict(variables).items()}

        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"  # ${!Literal}
            if name in local:
                return _scalar(local[name], f"Fn::Sub variable {name}")
            if "." in name:
                return _scalar(self.get_att(name.split(".", 1)), f"Fn::Sub ${{{name}}}")
            return _scalar(self.ref(name), f"Fn::Sub ${{{name}}}")

        return re.sub(r"\$\{([^}]+)\}", one, str(text))

    def import_value(self, argument: Any) -> str:
        name = _scalar(self.resolve(argument), "Fn::ImportValue")
        value = self.exports(name)
        if value is None:
            raise UnresolvedError(f"Fn::ImportValue {name}: no such export in this region")
        return value

    def find_in_map(self, argument: Any) -> Any:
        name, top, second = (_scalar(self.resolve(a), "Fn::FindInMap") for a in argument[:3])
        try:
            return self.template["Mappings"][name][top][second]
        except (KeyError, TypeError):
            raise UnresolvedError(
                f"Fn::FindInMap [{name}, {top}, {second}]: no such entry"
            ) from None

    def if_(self, argument: Any) -> Any:
        name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(name) else when_false)


def _scalar(value: Any, where: str) -> str:
    if isinstance(value, (list, dict)) or value is NO_VALUE:
        raise UnresolvedError(f"{where} is not a string")
    return _text(value)


def _text(value: Any) -> str:
    """A scalar as CloudFormation sends it to a custom resource: always a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _truth(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise UnresolvedError(f"{where} is not a condition")


def _equals(scope: Scope, argument: Any) -> bool:
    left, right = (scope.resolve(a) for a in argument)
    return bool(_as_sent(left) == _as_sent(right))


_FUNCTIONS: dict[str, Callable[[Scope, Any], Any]] = {
    "Ref": Scope.ref,
    "Condition": lambda s, name: s.condition(str(name)),
    "Fn::If": Scope.if_,
    "Fn::Equals": _equals,
    "Fn::Not": lambda s, a: not _truth(s.resolve(a[0]), "Fn::Not"),
    "Fn::And": lambda s, a: all(_truth(s.resolve(c), "Fn::And") for c in a),
    "Fn::Or": lambda s, a: any(_truth(s.resolve(c), "Fn::Or") for c in a),
    "Fn::Sub": Scope.sub,
    "Fn::Join": lambda s, a: _scalar(s.resolve(a[0]), "Fn::Join").join(
        _scalar(item, "Fn::Join") for item in s.resolve(a[1])
    ),
    "Fn::Split": lambda s, a: _scalar(s.resolve(a[1]), "Fn::Split").split(
        _scalar(s.resolve(a[0]), "Fn::Split")
    ),
    "Fn::Select": lambda s, a: s.resolve(a[1])[int(_scalar(s.resolve(a[0]), "Fn::Select"))],
    "Fn::GetAtt": Scope.get_att,
    "Fn::ImportValue": Scope.import_value,
    "Fn::FindInMap": Scope.find_in_map,
    "Fn::Base64": lambda s, a: base64.b64encode(
        _scalar(s.resolve(a), "Fn::Base64").encode()
    ).decode(),
}


def _as_sent(value: Any) -> Any:
    """Properties as the custom resource receives them: scalars become strings."""
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _as_sent(v) for k, v in value.items()}
    if value is None:
        return None
    return _text(value)


@dataclass(frozen=True)
class Properties:
    """One resource's properties under one set of parameters; ``unresolved`` says what could
    not be worked out (property name: why)."""

    values: dict[str, Any]
    unresolved: tuple[str, ...] = ()
    #: the resource's own Condition: False means the stack would not (or no longer) hold it
    exists: bool = True


def resource_properties(scope: Scope, logical_id: str) -> Properties:
    resource = scope.template["Resources"][logical_id]
    try:
        exists = scope.condition(resource["Condition"]) if "Condition" in resource else True
    except UnresolvedError as why:
        return Properties({}, (f"Condition: {why}",))
    values: dict[str, Any] = {}
    unresolved: list[str] = []
    for key, raw in (resource.get("Properties") or {}).items():
        try:
            value = scope.resolve(raw)
        except UnresolvedError as why:
            unresolved.append(f"{key}: {why}")
            continue
        except (IndexError, KeyError, TypeError, ValueError) as error:
            unresolved.append(f"{key}: malformed intrinsic function ({error!r})")
            continue
        if value is not NO_VALUE:
            values[key] = _as_sent(value)
    return Properties(values, tuple(unresolved), exists)


def canonical(properties: Mapping[str, Any]) -> str:
    """For "would CloudFormation send an Update?": it sends one only if a property changed."""
    return json.dumps(properties, sort_keys=True)
