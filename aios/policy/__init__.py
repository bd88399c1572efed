"""Policies: loading, validation in layers, compilation. See `aios.policy.loader`."""

from aios.policy.issues import Issue, KeyPath, Location, PolicyInvalid, Severity, format_path
from aios.policy.loader import Policy, load_policy, load_policy_text

__all__ = [
    "Issue",
    "KeyPath",
    "Location",
    "Policy",
    "PolicyInvalid",
    "Severity",
    "format_path",
    "load_policy",
    "load_policy_text",
]
