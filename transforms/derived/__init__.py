"""Derived tags (DESIGN §8): tags defined per tenant by an expression over other tags, parsed
from the definitions file, validated at load time and evaluated exactly on step functions."""

from tagflow.transforms.derived.definitions import (
    DerivedTag,
    DerivedTagDefinitions,
    TenantDerivedTags,
    derived_tag_id,
    load_definitions,
    parse_definitions,
    read_definitions_file,
    tenant_definitions,
    tenant_sections,
)
from tagflow.transforms.derived.evaluate import (
    DERIVED_TRANSITIONS,
    STEP_FUNCTION,
    StepFunction,
    evaluate_derived,
    evaluate_tenant,
    transitions_of,
)
from tagflow.transforms.derived.expression import parse_expression, render, tag_references

__all__ = [
    "DERIVED_TRANSITIONS",
    "STEP_FUNCTION",
    "DerivedTag",
    "DerivedTagDefinitions",
    "StepFunction",
    "TenantDerivedTags",
    "derived_tag_id",
    "evaluate_derived",
    "evaluate_tenant",
    "load_definitions",
    "parse_definitions",
    "parse_expression",
    "read_definitions_file",
    "render",
    "tag_references",
    "tenant_definitions",
    "tenant_sections",
    "transitions_of",
]
