-- hrmig schema, sqlite dialect: generated from the data dictionary
-- (`hrmig schema --dialect sqlite`); every statement is idempotent.

CREATE TABLE IF NOT EXISTS "departments" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "department" TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS "jobs" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "job" TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS "hired_employees" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "datetime" TEXT NOT NULL,
    "department_id" INTEGER NOT NULL REFERENCES "departments" ("id"),
    "job_id" INTEGER NOT NULL REFERENCES "jobs" ("id")
);

CREATE TABLE IF NOT EXISTS "hrmig_rejections" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "table_name" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "position" INTEGER NOT NULL,
    "raw" TEXT NOT NULL,
    "errors" TEXT NOT NULL,
    "rejected_at" TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_rejections_table_name_id" ON "hrmig_rejections" ("table_name", "id");

CREATE TABLE IF NOT EXISTS "hrmig_loads" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "table_name" TEXT NOT NULL,
    "source" TEXT NOT NULL,
    "sha256" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "rows_read" INTEGER NOT NULL,
    "inserted" INTEGER NOT NULL,
    "rejected" INTEGER NOT NULL,
    "blank" INTEGER NOT NULL,
    "message" TEXT NULL,
    "started_at" TEXT NOT NULL,
    "finished_at" TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_loads_table_name_sha256" ON "hrmig_loads" ("table_name", "sha256");

CREATE TABLE IF NOT EXISTS "hrmig_idempotency" (
    "id" INTEGER PRIMARY KEY AUTOINCREMENT,
    "key" TEXT NOT NULL,
    "fingerprint" TEXT NOT NULL,
    "response" TEXT NOT NULL,
    "created_at" TEXT NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS "hrmig_idempotency_key" ON "hrmig_idempotency" ("key");

