"""Strict validation of the custom resources the chart renders, the way kubernetes-validate checks built-in kinds.

kubernetes-validate reads schemas only from its own package (kubernetes_validate/kubernetes-json-schema/
v<VERSION>-local-strict/<kind>-<group>-<version>.json), so a CRD's kind is a WARN there. The schemas in
schemas/ (README.md there) use its layout and refer to its strict definitions of the Kubernetes types they embed;
this module validates with the same validator class and the same definitions registry it builds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import all_versions, major_minor
from referencing import Registry, Resource

SCHEMAS = Path(__file__).resolve().parent / "schemas"
PACKAGE_SCHEMAS = Path(kubernetes_validate.__file__).resolve().parent / "kubernetes-json-schema"


def schema_path(document: dict) -> Path:
    """Where a kind's schema lives: kubernetes-validate's file name for it, in schemas/."""
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", document["apiVersion"])
    return SCHEMAS / f"{document['kind'].lower()}-{api_version}.json"


def definitions(kubernetes: str) -> dict:
    """kubernetes-validate's strict definitions for the newest schema version not above KUBERNETES."""
    version = [v for v in all_versions() if Version(major_minor(v)) <= Version(major_minor(kubernetes))][-1]
    return json.loads((PACKAGE_SCHEMAS / f"v{version}-local-strict" / "_definitions.json").read_text())


def errors(document: dict, kubernetes: str) -> list[str]:
    """Every schema violation of DOCUMENT, as PATH: MESSAGE; a kind without a schema is one of them."""
    path = schema_path(document)
    if not path.is_file():
        return [f"no schema for {document['kind']} {document['apiVersion']} in {SCHEMAS}"]
    schema = json.loads(path.read_text())
    registry = Resource.from_contents(definitions(kubernetes)) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    return [f"{'.'.join(str(p) for p in error.absolute_path)}: {error.message}"
            for error in validator.iter_errors(document)]


class Version(tuple):
    """A dotted version that compares numerically: 1.29 < 1.37."""

    def __new__(cls, text: str):
        return super().__new__(cls, (int(part) for part in text.split(".")))
