"""Pytest fixtures for the in-process AMQP test broker (imported by the main conftest)."""

from __future__ import annotations

import logging

import pytest

from iris_pipeline_tests.amqp_broker import AmqpTestBroker

__all__ = ["amqp_broker", "make_amqp_broker"]


@pytest.fixture
def make_amqp_broker():
    """Factory: make_amqp_broker(lock_duration=2, max_delivery_count=5) → a started broker."""
    logging.getLogger("proton").setLevel(logging.CRITICAL)
    brokers: list[AmqpTestBroker] = []

    def make(**kwargs) -> AmqpTestBroker:
        broker = AmqpTestBroker(**kwargs)
        broker.start()
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        broker.stop()


@pytest.fixture
def amqp_broker(make_amqp_broker) -> AmqpTestBroker:
    """A started broker with Service Bus defaults (60 s lock, 5 deliveries)."""
    return make_amqp_broker()
