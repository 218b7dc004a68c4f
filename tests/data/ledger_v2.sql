-- The ledger schema as geno-bridge wrote it before issue 13 (migrations m001_initial and m002_open_posts_index,
-- main at 4925bf6), taken from a ledger that version created: the starting point of tests/test_migration.py.
-- Frozen on purpose: it must not follow later changes of bridge/ledger.py.
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE TABLE apps (
            instance TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            scopes TEXT NOT NULL,
            redirect_uri TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
CREATE TABLE orgs (
            name TEXT PRIMARY KEY,
            x_user_id TEXT NOT NULL,
            x_username TEXT NOT NULL,
            instance TEXT NOT NULL,
            account_id TEXT NOT NULL,
            acct TEXT NOT NULL,
            account_url TEXT NOT NULL,
            token TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            state_reason TEXT,
            limits_json TEXT,
            limits_fetched_at TEXT,
            last_poll_at TEXT,
            last_success_at TEXT,
            next_poll_at TEXT,
            poll_deferred_until TEXT,
            post_deferred_until TEXT,
            deferrals INTEGER NOT NULL DEFAULT 0,
            last_deferral TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
CREATE UNIQUE INDEX orgs_x_user ON orgs (x_user_id) WHERE state != 'unlinked';
CREATE TABLE cursors (
            org TEXT PRIMARY KEY REFERENCES orgs (name) ON DELETE CASCADE,
            newest_id TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
CREATE TABLE posts (
            org TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
            post_id TEXT NOT NULL,
            sort_key INTEGER NOT NULL,
            origin TEXT NOT NULL DEFAULT 'poll',
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'posting', 'delivered', 'skipped', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            last_error TEXT,
            idempotency_key TEXT,
            posting_since TEXT,
            post_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fetched_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, post_id)
        );
CREATE INDEX posts_due ON posts (org, state, sort_key);
CREATE TABLE deliveries (
            org TEXT NOT NULL,
            post_id TEXT NOT NULL,
            part INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('status', 'boost', 'edit')),
            status_id TEXT NOT NULL,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (org, post_id, part),
            FOREIGN KEY (org, post_id) REFERENCES posts (org, post_id) ON DELETE CASCADE
        );
CREATE UNIQUE INDEX deliveries_status ON deliveries (org, status_id, kind) WHERE kind != 'edit';
CREATE TABLE uploads (
            org TEXT NOT NULL REFERENCES orgs (name) ON DELETE CASCADE,
            media_id TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
CREATE INDEX uploads_recent ON uploads (org, created_at);
CREATE INDEX deliveries_post ON deliveries (post_id);
CREATE INDEX posts_open ON posts (org, sort_key, post_id) WHERE state IN ('pending', 'posting');
INSERT INTO _sqlite_migrations (id, migration_set, name, applied_at) VALUES
    (1, 'geno-bridge', 'm001_initial', '2026-11-01 09:00:00.000000+00:00'),
    (2, 'geno-bridge', 'm002_open_posts_index', '2026-11-15 09:00:00.000000+00:00');
