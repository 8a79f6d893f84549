"""``heaters up|worker|process-manager``: the long-running services (the web app, the pipeline's
process manager and workers, the projection daemon), each until SIGTERM or Ctrl+C."""

from __future__ import annotations

import logging
import signal
import threading

import click
import uvicorn

from entrypoints.bootstrap import configure_logging
from entrypoints.cli_support import CliError, Context, echo, pass_context, up_lock
from entrypoints.pipeline import build_pipeline
from infra.metrics import serve
from infra.object_storage import storage_from_settings
from projections.runner import ProjectionDaemon, catch_up
from web.app import create_app
from web.auth import user_count
from web.security import server_options


@click.command()
@click.option(
    "--threads",
    default=2,
    show_default=True,
    help="Worker threads (for the queues other than ingest; downloads get HEATERS_INGEST_WORKER_THREADS).",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    type=click.Choice(["ingest", "media", "embeddings"]),
    help="Only these queues (repeatable; default all).",
)
@pass_context
def worker(obj: Context, threads: int, queues: tuple[str, ...]) -> None:
    """Run a Dramatiq worker for the pipeline's actors (production: with HEATERS_REDIS_URL)."""
    # Workers only work (no process-manager pool here); `heaters process-manager` dispatches.
    _run_pipeline_until_stopped(
        obj, f"worker running ({threads} threads)", worker=True, threads=threads, queues=set(queues) or None
    )


@click.command("process-manager")
@pass_context
def process_manager(obj: Context) -> None:
    """Follow the event log and dispatch pipeline work (and reconcile stuck work)."""
    # Logs what it sends, refused sends, resends.
    _run_pipeline_until_stopped(obj, "process manager running", worker=False)


def _run_pipeline_until_stopped(
    obj: Context, running: str, *, worker: bool, threads: int = 2, queues: set[str] | None = None
) -> None:
    """Run the pipeline as a service until SIGTERM or Ctrl+C: its workers (``worker``: the actors of
    ``queues`` on ``threads`` threads) or else its process manager."""
    configure_logging(logging.INFO)  # a service: one line per stage run or send, always
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if obj.settings.metrics_port:
        serve(obj.settings.metrics_port)
    with obj.session() as (app, address):
        pipeline = build_pipeline(
            obj.settings, app, address, storage_from_settings(obj.settings), manager=not worker, worker=worker
        )
        pipeline.start(worker=worker, worker_threads=threads, queues=queues)
        echo(f"{running}; Ctrl+C stops")
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            pipeline.stop()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the web app listens on.")
@click.option("--port", default=8000, show_default=True, help="Port the web app listens on.")
@click.option("--web/--no-web", default=True, help="Serve the review, search, audit and ops pages.")
@click.option("--pipeline/--no-pipeline", default=True, help="Run the process manager (and reconciler).")
@click.option("--worker/--no-worker", default=True, help="Run pipeline actors in this process.")
@click.option("--projections/--no-projections", default=True, help="Keep the read models caught up.")
@pass_context
def up(
    obj: Context, host: str, port: int, web: bool, pipeline: bool, worker: bool, projections: bool
) -> None:
    """Run Heaters: web app, pipeline and projections (all embedded by default).

    With no HEATERS_* settings this needs no servers: PostgreSQL with pgvector runs embedded under
    HEATERS_HOME, media goes to HEATERS_HOME/media and the broker runs in-process.
    """
    configure_logging(logging.INFO)
    settings = obj.settings
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with obj.session() as (app, address), up_lock(settings) as alone:
        if not alone and pipeline:
            raise CliError(f"another `heaters up` is running on {settings.resolved_home}")
        storage = storage_from_settings(settings, base_url="/media")
        running = build_pipeline(settings, app, address, storage, manager=pipeline, worker=worker)
        daemon = ProjectionDaemon(app, address)
        catch_up(app, address)
        if projections:
            daemon.start()
        if pipeline or worker:
            running.start(worker=worker)
        try:
            if web:
                web_app = create_app(
                    settings,
                    app,
                    address,
                    storage,
                    queue_depths=running.queue_depths,
                    secret=settings.web_secret,
                )
                echo(f"Heaters is up: http://{host}:{port}/review  (Ctrl+C stops)")
                if user_count(address, settings.database_schema) == 0:
                    echo(
                        "No accounts yet: create one with `heaters user add NAME --role reviewer|auditor|ops`"
                    )
                # forwarded headers only from HEATERS_TRUSTED_PROXIES (default: none)
                uvicorn.run(web_app, host=host, port=port, log_level="info", **server_options(settings))
            else:
                echo("Heaters is up (no web); Ctrl+C stops")
                stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            running.stop()
            daemon.stop()
