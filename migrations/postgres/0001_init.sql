-- hrmig schema, postgres dialect: generated from the data dictionary
-- (`hrmig schema --dialect postgres`); every statement is idempotent.

CREATE TABLE IF NOT EXISTS "departments" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "department" VARCHAR(255) NOT NULL
);

CREATE TABLE IF NOT EXISTS "jobs" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "job" VARCHAR(255) NOT NULL
);

CREATE TABLE IF NOT EXISTS "hired_employees" (
    "id" INTEGER NOT NULL PRIMARY KEY,
    "name" VARCHAR(255) NOT NULL,
    "datetime" TIMESTAMP(3) WITH TIME ZONE NOT NULL,
    "department_id" INTEGER NOT NULL REFERENCES "departments" ("id") DEFERRABLE,
    "job_id" INTEGER NOT NULL REFERENCES "jobs" ("id") DEFERRABLE
);

CREATE INDEX IF NOT EXISTS "hired_employees_department_id" ON "hired_employees" ("department_id");

CREATE INDEX IF NOT EXISTS "hired_employees_job_id" ON "hired_employees" ("job_id");

CREATE TABLE IF NOT EXISTS "hrmig_rejections" (
    "id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "table_name" VARCHAR(255) NOT NULL,
    "source" TEXT NOT NULL,
    "position" BIGINT NOT NULL,
    "raw" TEXT NOT NULL,
    "errors" JSONB NOT NULL,
    "rejected_at" TIMESTAMP(3) WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_rejections_table_name_id" ON "hrmig_rejections" ("table_name", "id");

CREATE TABLE IF NOT EXISTS "hrmig_loads" (
    "id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "table_name" VARCHAR(255) NOT NULL,
    "source" TEXT NOT NULL,
    "sha256" VARCHAR(255) NOT NULL,
    "status" VARCHAR(255) NOT NULL,
    "rows_read" BIGINT NOT NULL,
    "inserted" BIGINT NOT NULL,
    "rejected" BIGINT NOT NULL,
    "blank" BIGINT NOT NULL,
    "message" TEXT NULL,
    "started_at" TIMESTAMP(3) WITH TIME ZONE NOT NULL,
    "finished_at" TIMESTAMP(3) WITH TIME ZONE NOT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_loads_table_name_sha256" ON "hrmig_loads" ("table_name", "sha256");

CREATE TABLE IF NOT EXISTS "hrmig_idempotency" (
    "id" BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    "key" VARCHAR(255) NOT NULL,
    "fingerprint" VARCHAR(255) NOT NULL,
    "response" TEXT NOT NULL,
    "created_at" TIMESTAMP(3) WITH TIME ZONE NOT NULL
);

CREATE UNIQUE INDEX IF NOT EXISTS "hrmig_idempotency_key" ON "hrmig_idempotency" ("key");

CREATE TABLE IF NOT EXISTS "hrmig_jobs" (
    "id" VARCHAR(64) NOT NULL PRIMARY KEY,
    "status" VARCHAR(255) NOT NULL,
    "request" TEXT NOT NULL,
    "tables" TEXT NOT NULL,
    "progress" TEXT NOT NULL,
    "error" TEXT NULL,
    "created_ms" BIGINT NOT NULL,
    "heartbeat_ms" BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_jobs_created_ms" ON "hrmig_jobs" ("created_ms");

