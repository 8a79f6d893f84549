"""The Dramatiq broker: Redis in production (``HEATERS_REDIS_URL``), in-process otherwise."""

from __future__ import annotations

import logging

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, Retries, default_middleware

from infra.config import Settings

log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> dramatiq.Broker:
    """A new broker with Dramatiq's default middleware, its ``Retries`` giving each message
    ``HEATERS_MAX_ATTEMPTS`` attempts (actors set their own backoff)."""
    middleware: list[Middleware] = [
        Retries(max_retries=settings.max_attempts - 1) if kind is Retries else kind()
        for kind in default_middleware
    ]
    broker: dramatiq.Broker
    if settings.redis_url:
        broker = RedisBroker(  # type: ignore[no-untyped-call]
            url=settings.redis_url,
            namespace=settings.redis_namespace,
            heartbeat_timeout=settings.redis_heartbeat_timeout_ms,
            middleware=middleware,
        )
        log.info("broker: Redis at %s", settings.redis_url)
    else:
        broker = StubBroker(middleware)
        broker.emit_after("process_boot")
        log.info("broker: in-process (set HEATERS_REDIS_URL for Redis)")
    return broker


def queue_depths(broker: dramatiq.Broker) -> dict[str, int]:
    """Messages waiting per queue (Redis and in-process brokers)."""
    depths: dict[str, int] = {}
    for queue in sorted(broker.get_declared_queues()):
        if isinstance(broker, RedisBroker):
            depths[queue] = int(broker.client.llen(f"{broker.namespace}:{queue}") or 0)
        elif isinstance(broker, StubBroker):
            depths[queue] = broker.queues[queue].qsize()
    return depths
