-- The ledger schema as geno-bridge wrote it before issue 16 (migrations m001_initial to m003_sources_targets_copies,
-- main at 88c9b62), taken from a ledger that version created: the starting point of m004's tests in tests/test_migration.py.
-- Frozen on purpose: it must not follow later changes of bridge/ledger.py.
CREATE TABLE "_sqlite_migrations" (
   "id" INTEGER PRIMARY KEY,
   "migration_set" TEXT,
   "name" TEXT,
   "applied_at" TEXT
);
CREATE TABLE apps (
            instance TEXT PRIMARY KEY,
            client_id TEXT NOT NULL,
            client_secret TEXT NOT NULL,
            scopes TEXT NOT NULL,
            redirect_uri TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
CREATE TABLE "orgs" (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            state_reason TEXT,
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
CREATE TABLE sources (
            org TEXT NOT NULL REFERENCES "orgs" (name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            account_id TEXT NOT NULL,
            handle TEXT NOT NULL,
            cursor TEXT,
            cursor_updated_at TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, name)
        );
CREATE TABLE targets (
            org TEXT NOT NULL REFERENCES "orgs" (name) ON DELETE CASCADE,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            base_url TEXT NOT NULL,
            account_id TEXT NOT NULL,
            handle TEXT NOT NULL,
            account_url TEXT NOT NULL,
            credentials TEXT,
            limits_json TEXT,
            limits_fetched_at TEXT,
            state TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'paused', 'needs_relink', 'unlinked')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (org, name)
        );
CREATE TABLE "posts" (
            org TEXT NOT NULL,
            source TEXT NOT NULL,
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
            PRIMARY KEY (org, source, post_id),
            FOREIGN KEY (org, source) REFERENCES sources (org, name) ON DELETE CASCADE
        );
CREATE TABLE "deliveries" (
            org TEXT NOT NULL,
            source TEXT NOT NULL,
            post_id TEXT NOT NULL,
            target TEXT NOT NULL,
            part INTEGER NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('status', 'boost', 'edit')),
            copy_id TEXT NOT NULL,
            url TEXT NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (org, source, post_id, target, part),
            FOREIGN KEY (org, source, post_id) REFERENCES "posts" (org, source, post_id) ON DELETE CASCADE,
            FOREIGN KEY (org, target) REFERENCES targets (org, name) ON DELETE CASCADE
        );
CREATE TABLE "uploads" (
            org TEXT NOT NULL,
            target TEXT NOT NULL,
            media_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (org, target) REFERENCES targets (org, name) ON DELETE CASCADE
        );
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name"
    ON "_sqlite_migrations" ("migration_set", "name");
CREATE UNIQUE INDEX sources_account ON sources (kind, account_id) WHERE state != 'unlinked';
CREATE INDEX posts_due ON posts (org, state, sort_key);
CREATE INDEX posts_open ON posts (org, sort_key, post_id) WHERE state IN ('pending', 'posting');
CREATE UNIQUE INDEX deliveries_copy ON deliveries (org, target, copy_id, kind) WHERE kind != 'edit';
CREATE INDEX deliveries_post ON deliveries (post_id);
CREATE INDEX uploads_recent ON uploads (org, target, created_at)
;
INSERT INTO _sqlite_migrations (id, migration_set, name, applied_at) VALUES
    (1, 'geno-bridge', 'm001_initial', '2026-11-01 09:00:00.000000+00:00'),
    (2, 'geno-bridge', 'm002_open_posts_index', '2026-11-15 09:00:00.000000+00:00'),
    (3, 'geno-bridge', 'm003_sources_targets_copies', '2026-11-25 09:00:00.000000+00:00');
