"""Trigger rules: config models and loading, pure evaluation, and the batch engine."""

from triggers.contracts import DeadLetter, Decision, SendRequest, request_id
from triggers.engine import BatchResult, Engine, Incoming, Outbox
from triggers.errors import ConfigError, ConfigIssue, TriggerError
from triggers.loader import RuleSet, load_rules
from triggers.rules import AbsenceRule, InactivityRule, OnEventRule, Rule, RulesConfig

__all__ = [
    "AbsenceRule",
    "BatchResult",
    "ConfigError",
    "ConfigIssue",
    "DeadLetter",
    "Decision",
    "Engine",
    "InactivityRule",
    "Incoming",
    "OnEventRule",
    "Outbox",
    "Rule",
    "RuleSet",
    "RulesConfig",
    "SendRequest",
    "TriggerError",
    "load_rules",
    "request_id",
]
