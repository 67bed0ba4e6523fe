-- hrmig lineage, postgres dialect: the rows each operation wrote, and undo.

ALTER TABLE "hrmig_loads" ADD COLUMN IF NOT EXISTS "undone_by" BIGINT NULL;

ALTER TABLE "hrmig_loads" ADD COLUMN IF NOT EXISTS "removed" BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS "hrmig_lineage" (
    "operation" BIGINT NOT NULL,
    "table_name" VARCHAR(255) NOT NULL,
    "first_id" BIGINT NOT NULL,
    "last_id" BIGINT NOT NULL,
    "first_position" BIGINT NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_lineage_table_name_first_id" ON "hrmig_lineage" ("table_name", "first_id");

CREATE INDEX IF NOT EXISTS "hrmig_lineage_operation_first_id" ON "hrmig_lineage" ("operation", "first_id");
