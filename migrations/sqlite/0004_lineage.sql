-- hrmig lineage, sqlite dialect: the rows each operation wrote, and undo.

ALTER TABLE "hrmig_loads" ADD COLUMN "undone_by" INTEGER NULL;

ALTER TABLE "hrmig_loads" ADD COLUMN "removed" INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS "hrmig_lineage" (
    "operation" INTEGER NOT NULL,
    "table_name" TEXT NOT NULL,
    "first_id" INTEGER NOT NULL,
    "last_id" INTEGER NOT NULL,
    "first_position" INTEGER NULL
);

CREATE INDEX IF NOT EXISTS "hrmig_lineage_table_name_first_id" ON "hrmig_lineage" ("table_name", "first_id");

CREATE INDEX IF NOT EXISTS "hrmig_lineage_operation_first_id" ON "hrmig_lineage" ("operation", "first_id");
