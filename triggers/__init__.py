"""Trigger rules: config models and loading, pure evaluation, the batch engine, simulation."""

from triggers.contracts import DeadLetter, Decision, SendRequest, request_id
from triggers.engine import BatchResult, Engine, Incoming, InMemoryOutbox, Outbox
from triggers.errors import ConfigError, ConfigIssue, TriggerError
from triggers.loader import RuleSet, load_rules
from triggers.rules import (
    AbsenceRule,
    DateRule,
    InactivityRule,
    OnEventRule,
    Rule,
    RulesConfig,
    SegmentEntryRule,
    SequenceRule,
    ThresholdRule,
)
from triggers.simulate import Simulation, simulate

__all__ = [
    "AbsenceRule",
    "BatchResult",
    "ConfigError",
    "ConfigIssue",
    "DateRule",
    "DeadLetter",
    "Decision",
    "Engine",
    "InMemoryOutbox",
    "InactivityRule",
    "Incoming",
    "OnEventRule",
    "Outbox",
    "Rule",
    "RuleSet",
    "RulesConfig",
    "SegmentEntryRule",
    "SendRequest",
    "SequenceRule",
    "Simulation",
    "ThresholdRule",
    "TriggerError",
    "load_rules",
    "request_id",
    "simulate",
]
