"""The read-model tables: the contract between the projections that write them and the web app and CLI
that read them. Tables live in the configured schema (``HEATERS_DATABASE_SCHEMA``, default ``heaters``).

A rebuild creates the same tables with a suffix (``rm_clips__rebuild``) beside the live ones and swaps
them in one transaction once caught up, so readers always see a complete read model.
"""

from __future__ import annotations

from domain.stages import ClipState

#: Read-model tables owned by each projection (name → tables). Rebuilding a projection rebuilds these.
PROJECTION_TABLES: dict[str, tuple[str, ...]] = {
    "videos": ("rm_videos",),
    "clips": ("rm_clips",),
    "history": ("rm_history",),
    "similarity": ("rm_embeddings",),
    "stats": ("rm_stage_stats",),
}

#: ``{t}`` is replaced by the table name (with a rebuild suffix when rebuilding).
TABLE_DDL: dict[str, str] = {
    # One row per video: where it is in the pipeline.
    "rm_videos": """
        CREATE TABLE IF NOT EXISTS {t} (
            id uuid PRIMARY KEY,
            source text NOT NULL,
            title text,
            state text NOT NULL,               -- Video.state: submitted, <stage>_running|_failed|_pending, clipped
            current_stage text,                -- download, proxy, sprites, shots, or NULL when all done
            failed_stage text,
            failure_reason text,
            stages jsonb NOT NULL DEFAULT '{{}}', -- {stage: {status, attempts, last_error}}
            media jsonb NOT NULL DEFAULT '{{}}',  -- {source, proxy, sprites: object-storage keys}
            frame_count integer,
            fps double precision,
            width integer,
            height integer,
            duration double precision,
            clip_count integer NOT NULL DEFAULT 0,
            pending_count integer NOT NULL DEFAULT 0,
            submitted_by text NOT NULL,
            submitted_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL
        );
        -- the review queue walks the videos with clips pending review, oldest first (web/leases.py)
        CREATE INDEX IF NOT EXISTS {t}_queue ON {t} (submitted_at, id) WHERE pending_count > 0""",
    # One row per clip ever created (retired ones too, with live = false).
    "rm_clips": """
        CREATE TABLE IF NOT EXISTS {t} (
            id uuid PRIMARY KEY,
            video_id uuid NOT NULL,
            start_frame integer NOT NULL,
            end_frame integer NOT NULL,
            state text NOT NULL,               -- Clip.state
            live boolean NOT NULL,
            origin text NOT NULL,              -- shots, split, merge
            parent_ids uuid[] NOT NULL DEFAULT '{{}}',
            grouped_with uuid[] NOT NULL DEFAULT '{{}}',
            sprite_manifest text,
            keyframes jsonb NOT NULL DEFAULT '{{}}',
            export_key text,
            failed_stage text,
            failure_reason text,
            last_actor text,
            stages jsonb NOT NULL DEFAULT '{{}}',  -- {stage: {status, attempts, last_error}} (added by projections)
            decisions jsonb NOT NULL DEFAULT '[]', -- the clip's review decision stack, last = what undo reverses
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            version integer NOT NULL
        );
        CREATE INDEX IF NOT EXISTS {t}_video ON {t} (video_id, start_frame) WHERE live;
        CREATE INDEX IF NOT EXISTS {t}_pending ON {t} (created_at, id) WHERE state = """
    f"'{ClipState.PENDING_REVIEW}';"
    # a video's clips pending review in frame order: the review queue (web/leases.py)
    """
        CREATE INDEX IF NOT EXISTS {t}_queue ON {t} (video_id, start_frame) WHERE live AND state = """
    f"'{ClipState.PENDING_REVIEW}'",
    # Every event of every video and clip, for the audit pages.
    "rm_history": """
        CREATE TABLE IF NOT EXISTS {t} (
            aggregate_id uuid NOT NULL,
            version integer NOT NULL,
            kind text NOT NULL,                -- video or clip
            event text NOT NULL,               -- the topic's name part, e.g. Approved
            actor text NOT NULL,
            at timestamptz NOT NULL,
            payload jsonb NOT NULL,
            position bigint NOT NULL,          -- notification id in the event log
            PRIMARY KEY (aggregate_id, version)
        )""",
    # L2-normalised CLIP vectors, one row per (clip, model, strategy, vector_index); vector_index is 0
    # except for keyframe_multi (one row per keyframe). HNSW indexes for cosine distance are created per
    # dimension with enough rows (projections.similarity.INDEX_MIN_ROWS) as partial expression indexes:
    # ((embedding::halfvec(D)) halfvec_cosine_ops) WHERE dimension = D.
    "rm_embeddings": """
        CREATE TABLE IF NOT EXISTS {t} (
            clip_id uuid NOT NULL,
            model text NOT NULL,
            strategy text NOT NULL,
            vector_index integer NOT NULL DEFAULT 0,
            video_id uuid NOT NULL,
            live boolean NOT NULL DEFAULT true,
            dimension integer NOT NULL,
            embedding vector NOT NULL,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (clip_id, model, strategy, vector_index)
        -- Vectors stay in the row up to ~2,000 dimensions (pgvector's type is stored out of line past
        -- ~2 KB: a 512-d one went to TOAST, and an exact ranking of every vector took 3 times the CPU).
        ) WITH (toast_tuple_target = 8160);
        -- A search within one video ranks that video's vectors exactly, through this index.
        CREATE INDEX IF NOT EXISTS {t}_video ON {t} (video_id);
        -- A dimension without its HNSW index (too few rows) is ranked exactly: its rows through this.
        CREATE INDEX IF NOT EXISTS {t}_dimension ON {t} (dimension, model, strategy)""",
    # Counts per (kind, state) plus failure counts, for the ops page.
    "rm_stage_stats": """
        CREATE TABLE IF NOT EXISTS {t} (
            kind text NOT NULL,                -- video or clip
            state text NOT NULL,
            count integer NOT NULL,
            PRIMARY KEY (kind, state)
        )""",
}

#: Bookkeeping of the projection runners (not rebuilt).
RUNNER_DDL = """
    CREATE TABLE IF NOT EXISTS projection_positions (
        name text PRIMARY KEY,
        position bigint NOT NULL DEFAULT 0,    -- last notification id applied (same transaction as rows)
        state text NOT NULL DEFAULT 'running', -- running, stopped (error policy stop), rebuilding
        last_error text,
        error_position bigint,
        updated_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS projection_errors (
        name text NOT NULL,
        position bigint NOT NULL,
        topic text NOT NULL,
        error text NOT NULL,
        skipped boolean NOT NULL,
        at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (name, position)
    )"""
