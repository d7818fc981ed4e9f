"""The Kafka bus's client options: what it sets, without a broker."""

from __future__ import annotations

import pytest

from commercekit.errors import ConfigurationError
from commercekit.events.kafka import KafkaEventBus


def test_clients_read_the_cluster_metadata_again_within_seconds() -> None:
    # A fetch from a broker that died only fails and retries: the new leader is
    # found at the next metadata read, which aiokafka makes every 5 minutes by default.
    bus = KafkaEventBus("127.0.0.1:9092")
    assert bus._consumer_options["metadata_max_age_ms"] == 10_000
    assert bus._producer_options["metadata_max_age_ms"] == 10_000
    tuned = KafkaEventBus("127.0.0.1:9092", metadata_max_age_ms=3_000)
    assert tuned._consumer_options["metadata_max_age_ms"] == 3_000


def test_acks_all_cannot_be_turned_off() -> None:
    with pytest.raises(ConfigurationError):
        KafkaEventBus("127.0.0.1:9092", producer_options={"acks": 1})
