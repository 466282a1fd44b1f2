"""The SQLite schema of the scheduler's tables, one script per version."""

MIGRATIONS = [
    # 1: first schema
    """
    CREATE TABLE job_settings (
        job TEXT PRIMARY KEY,
        interval_seconds INTEGER,
        paused INTEGER NOT NULL DEFAULT 0,
        updated_at REAL,
        updated_by TEXT
    );
    CREATE TABLE job_state (
        job TEXT PRIMARY KEY,
        last_started_at REAL,
        last_finished_at REAL,
        last_duration REAL,
        last_outcome TEXT,
        last_error TEXT,
        last_traceback TEXT,
        last_slot REAL,
        next_run REAL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        job TEXT NOT NULL,
        slot REAL,
        trigger TEXT NOT NULL,
        user TEXT,
        owner TEXT,
        started_at REAL NOT NULL,
        finished_at REAL,
        duration REAL,
        outcome TEXT NOT NULL,
        error TEXT,
        traceback TEXT,
        log TEXT,
        result TEXT
    );
    CREATE UNIQUE INDEX runs_job_slot ON runs (job, slot) WHERE slot IS NOT NULL;
    CREATE INDEX runs_job_started ON runs (job, started_at DESC);
    CREATE INDEX runs_outcome ON runs (outcome);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        user TEXT,
        job TEXT NOT NULL,
        action TEXT NOT NULL,
        old_value TEXT,
        new_value TEXT
    );
    CREATE INDEX audit_at ON audit (at DESC);
    CREATE TABLE lease (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        acquired_at REAL NOT NULL,
        renewed_at REAL NOT NULL,
        expires_at REAL NOT NULL
    );
    """,
    # 2: let every process of the app see the scheduler's live state and send it controls
    """
    ALTER TABLE job_settings ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE job_settings ADD COLUMN origin TEXT;
    CREATE INDEX job_settings_seq ON job_settings (seq);
    CREATE TABLE job_live (
        job TEXT PRIMARY KEY,
        data TEXT NOT NULL,
        origin TEXT NOT NULL,
        seq INTEGER NOT NULL
    );
    CREATE INDEX job_live_seq ON job_live (seq);
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        action TEXT NOT NULL,
        user TEXT,
        at REAL NOT NULL,
        origin TEXT
    );
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO counters (name, value) VALUES ('changes', 0);
    """,
    # 3: fencing: every takeover of the lease counts up its epoch
    """
    ALTER TABLE lease ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
