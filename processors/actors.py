"""Dramatiq actors: one per stage, each running that stage for one video or clip.

Their options are on the decorators (``@stage_actor``: ``@dramatiq.actor`` with a stage's options):
the queue (``processors/queues.py``), the time limit, the retry backoff, and ``throws``: a ``PermanentFailure`` (recorded by the stage with its reason) is not retried.
Any other error is retried by Dramatiq's ``Retries`` middleware, which the broker gets from
``HEATERS_MAX_ATTEMPTS`` (``infra/broker.py``). What every actor shares is middleware
(``processors/middleware.py``): the pipeline context, the work claim and its heartbeat, timing, and
the ``…Failed`` event when retries run out.

The actors are declared at import on a broker of their own (Dramatiq checks their options against
one); ``declare_actors`` declares them on each broker a process runs, so several brokers in one
process (tests) each have them. Names stay ``heaters_<stage>``: queued messages name their actor.
"""

from __future__ import annotations

import logging
from uuid import UUID

import dramatiq
from dramatiq.actor import ActorDecorator
from dramatiq.brokers.stub import StubBroker

from domain.stages import PURGE, ClipStage, VideoStage
from processors import stages
from processors.middleware import ACTOR_PREFIX, current_run
from processors.queues import STAGE_QUEUES
from processors.stages import PermanentFailure

log = logging.getLogger(__name__)

MINUTE_MS = 60_000

_declared_on = StubBroker()


def stage_actor(stage: str, *, minutes: int) -> ActorDecorator:
    """``@dramatiq.actor`` with a stage's options: its name (``heaters_<stage>``), its queue, its time
    limit, and what every stage shares: where it is first declared, and how it is retried (a
    ``PermanentFailure`` never: the stage has recorded it)."""
    return dramatiq.actor(
        actor_name=f"{ACTOR_PREFIX}{stage}",
        queue_name=STAGE_QUEUES[stage],
        time_limit=minutes * MINUTE_MS,
        broker=_declared_on,
        throws=(PermanentFailure,),
        min_backoff=1_000,
        max_backoff=5 * MINUTE_MS,
    )


# -- video stages: their attempts are counted by the video (across deliveries and a person's retries)


@stage_actor(VideoStage.DOWNLOAD, minutes=180)
def download(video_id: str) -> None:
    stages.download(current_run().context, UUID(video_id))


@stage_actor(VideoStage.PROXY, minutes=120)
def make_proxy(video_id: str) -> None:
    stages.proxy(current_run().context, UUID(video_id))


@stage_actor(VideoStage.SPRITES, minutes=60)
def make_sprites(video_id: str) -> None:
    stages.sprites(current_run().context, UUID(video_id))


@stage_actor(VideoStage.SHOTS, minutes=60)
def detect_shots(video_id: str) -> None:
    stages.shots(current_run().context, UUID(video_id))


# -- clip stages: their attempt is the message's delivery attempt --------------------------------


@stage_actor(ClipStage.KEYFRAMES, minutes=5)
def extract_keyframes(clip_id: str) -> None:
    run = current_run()
    stages.keyframes(run.context, UUID(clip_id), run.attempt)


@stage_actor(ClipStage.EMBEDDING, minutes=10)
def embed(clip_id: str) -> None:
    run = current_run()
    stages.embedding(run.context, UUID(clip_id), run.attempt)


@stage_actor(ClipStage.EXPORT, minutes=10)
def export(clip_id: str) -> None:
    run = current_run()
    stages.export(run.context, UUID(clip_id), run.attempt)


@stage_actor(PURGE, minutes=5)
def purge(clip_id: str) -> None:
    """An archived clip's derived media, after the grace period (no ``…Failed`` event: it is retried)."""
    stages.purge_archived(current_run().context, UUID(clip_id))


STAGE_ACTORS: dict[str, dramatiq.Actor[[str], None]] = {
    VideoStage.DOWNLOAD: download,
    VideoStage.PROXY: make_proxy,
    VideoStage.SPRITES: make_sprites,
    VideoStage.SHOTS: detect_shots,
    ClipStage.KEYFRAMES: extract_keyframes,
    ClipStage.EMBEDDING: embed,
    ClipStage.EXPORT: export,
    PURGE: purge,
}


def declare_actors(broker: dramatiq.Broker) -> None:
    """Put the stage actors (and their queues) on ``broker``, whose workers then run them."""
    for actor in STAGE_ACTORS.values():
        broker.declare_actor(actor)


def dispatch(broker: dramatiq.Broker, stage: str, aggregate_id: UUID, delay_ms: int | None = None) -> str:
    """Send one message: run ``stage`` for this video or clip (after ``delay_ms``)."""
    message = broker.enqueue(STAGE_ACTORS[stage].message(str(aggregate_id)), delay=delay_ms)
    log.info("dispatched %s for %s (message %s)", stage, aggregate_id, message.message_id)
    return str(message.message_id)
