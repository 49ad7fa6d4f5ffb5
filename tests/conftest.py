"""Shared fixtures live in tests/support/*; this file only wires them in."""

pytest_plugins = [
    "tests.support.model_fixtures",
    "tests.support.model_variants",
    "tests.support.kafka_fixtures",
    "tests.support.starter_fixtures",
    "tests.support.ci_skips",
    "tests.support.ordering",
    "pytester",  # tests of the plugins above
]
