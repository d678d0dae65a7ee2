"""The library file's schema: its migrations (append only), version and application id."""

from __future__ import annotations

from ..library_boxes import MIGRATION_V3

#: ``PRAGMA application_id`` of a library file ("AVST"), so we never adopt someone else's database.
APPLICATION_ID = 0x41565354

# Each migration takes the schema from version i to i + 1 (index 0 builds v1 on an empty file).
# Append only: never edit a migration that has shipped; add a new one instead.
MIGRATIONS: list[str] = [
    # v1: clips, annotations (with history), predictions.
    """
    CREATE TABLE clips (
        id           INTEGER PRIMARY KEY,
        path         TEXT NOT NULL UNIQUE,
        content_hash TEXT,
        size         INTEGER,
        duration     REAL,
        width        INTEGER,
        height       INTEGER,
        fps          REAL,
        has_audio    INTEGER NOT NULL DEFAULT 0 CHECK (has_audio IN (0, 1)),
        added_at     TEXT NOT NULL
    );
    CREATE INDEX clips_hash ON clips(content_hash);
    CREATE TABLE annotations (
        id           INTEGER PRIMARY KEY,
        clip_id      INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
        count        INTEGER CHECK (count IS NULL OR (count BETWEEN 0 AND 16)),
        unsure       INTEGER NOT NULL DEFAULT 0 CHECK (unsure IN (0, 1)),
        who          TEXT NOT NULL,
        created_at   TEXT NOT NULL
    );
    CREATE INDEX annotations_clip ON annotations(clip_id, id);
    CREATE TABLE predictions (
        id           INTEGER PRIMARY KEY,
        clip_id      INTEGER NOT NULL REFERENCES clips(id) ON DELETE CASCADE,
        model        TEXT NOT NULL,
        count        INTEGER NOT NULL CHECK (count BETWEEN 0 AND 16),
        confidence   REAL CHECK (confidence IS NULL OR (confidence BETWEEN 0 AND 1)),
        created_at   TEXT NOT NULL
    );
    CREATE INDEX predictions_clip ON predictions(clip_id, id);
    """,
    # v2: missing-file tracking, cleared annotations (undo of an annotation), training runs.
    """
    ALTER TABLE clips ADD COLUMN missing INTEGER NOT NULL DEFAULT 0 CHECK (missing IN (0, 1));
    ALTER TABLE clips ADD COLUMN last_seen TEXT;
    UPDATE clips SET last_seen = added_at;
    ALTER TABLE annotations ADD COLUMN cleared INTEGER NOT NULL DEFAULT 0 CHECK (cleared IN (0, 1));
    CREATE TABLE runs (
        id           INTEGER PRIMARY KEY,
        name         TEXT NOT NULL,
        config       TEXT NOT NULL DEFAULT '{}',
        stages       TEXT NOT NULL DEFAULT '[]',
        status       TEXT NOT NULL DEFAULT 'created',
        created_at   TEXT NOT NULL,
        started_at   TEXT,
        ended_at     TEXT,
        model_path   TEXT,
        metrics      TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE run_checkpoints (
        id           INTEGER PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        stage        TEXT NOT NULL,
        epoch        INTEGER,
        path         TEXT NOT NULL,
        metrics      TEXT NOT NULL DEFAULT '{}',
        created_at   TEXT NOT NULL
    );
    CREATE INDEX run_checkpoints_run ON run_checkpoints(run_id, id);
    """,
    # v3: box annotations (where each sound is), with their history (library_boxes.py).
    MIGRATION_V3,
    # v4: the counter's rate beside its count (the "confidence" it replaces was never explained;
    # older rows keep theirs, new ones leave it empty).
    """
    ALTER TABLE predictions ADD COLUMN rate REAL CHECK (rate IS NULL OR rate >= 0);
    """,
]

#: The schema version this code writes (``PRAGMA user_version``).
SCHEMA_VERSION = len(MIGRATIONS)

RUN_STATUSES = ("created", "running", "finished", "failed", "cancelled")

_TERMINAL = {"finished", "failed", "cancelled"}

def split_sql(script: str) -> list[str]:
    """Split a migration into statements (ours contain no ';' inside literals or triggers)."""
    return [s.strip() for s in script.split(";") if s.strip()]
