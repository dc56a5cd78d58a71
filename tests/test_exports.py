"""The public surface of each package is deliberate: adding or dropping a name is a choice."""

from __future__ import annotations

import importlib

import pytest

EXPECTED = {
    "profiles": {
        "DEFAULT_MAX_EVENT_BYTES",
        "KNOWN_EVENT_TYPES",
        "NO_LOOKUPS",
        "Cart",
        "CartLine",
        "ConsentChange",
        "CorruptProfile",
        "Credit",
        "Exposure",
        "attribute",
        "expose",
        "Event",
        "FeaturedSend",
        "FeedbackConfig",
        "InMemoryProfileStore",
        "InMemoryTimerStore",
        "Activity",
        "InMemoryStatistics",
        "RecommendationConfig",
        "Statistics",
        "Catalog",
        "CatalogError",
        "InMemoryCatalog",
        "InvalidProduct",
        "load_catalog",
        "parse_product",
        "LookupCache",
        "RedisStatistics",
        "RedisCatalog",
        "InvalidAddress",
        "InvalidEvent",
        "Keys",
        "LastCart",
        "LifecycleConfig",
        "Predicted",
        "LookupSource",
        "Lookups",
        "Product",
        "Profile",
        "ProfileError",
        "ProfileStore",
        "ProfileWrite",
        "Ranked",
        "RedisProfileStore",
        "RedisTimerStore",
        "InMemorySuppressionList",
        "Pseudonyms",
        "RedisSuppressionList",
        "SuppressionList",
        "SuppressionOps",
        "personal_products",
        "ScoringConfig",
        "SendRecord",
        "Snapshot",
        "StoreUnavailable",
        "Timer",
        "TimerOps",
        "TimerStore",
        "apply_event",
        "normalise_address",
        "parse_event",
        "settle_feedback",
        "timer_id",
        "mask_address",
        "InvalidToken",
        "UnsubscribeRequest",
        "UnsubscribeSigner",
        "development_signer",
        "unsubscribe_event",
        "ClickLink",
        "InvalidLink",
        "LinkSigner",
        "OpenPixel",
        "click_event",
        "development_link_signer",
        "open_event",
    },
    "profiles.predictions": {
        "FEATURES",
        "SCORES",
        "TARGETS",
        "Distribution",
        "FeatureRow",
        "Model",
        "ModelError",
        "Reason",
        "Scores",
        "Target",
        "feature_rows",
        "feature_vector",
    },
    "render": {
        "REQUIRED_FILES",
        "TEMPLATE_FILES",
        "MissingData",
        "TemplateSpec",
        "normalise_locale",
        "RenderError",
        "RenderedEmail",
        "Renderer",
        "TemplateMissing",
        "build_environment",
        "build_expression_environment",
    },
    "triggers": {
        "AbsenceRule",
        "BatchResult",
        "DateRule",
        "SegmentEntryRule",
        "SequenceRule",
        "Simulation",
        "ThresholdRule",
        "simulate",
        "ConfigError",
        "ConfigIssue",
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
        "SendRequest",
        "TriggerError",
        "load_rules",
        "request_id",
    },
}


@pytest.mark.parametrize("package", sorted(EXPECTED))
def test_exports(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) == EXPECTED[package]
    for name in module.__all__:
        assert hasattr(module, name), name


def test_packages_depend_inward_only() -> None:
    """profiles and render import nothing of the other nudge packages."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    forbidden = {
        "profiles": {"render", "triggers", "streams"},
        "render": {"profiles", "triggers", "streams"},
        "triggers": {"streams"},
    }
    for package, banned in forbidden.items():
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                for name in names:
                    assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
