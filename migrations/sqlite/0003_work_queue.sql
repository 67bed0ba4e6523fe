-- hrmig work queue, sqlite dialect: rejection statuses, operation kinds, updated rows.

ALTER TABLE "hrmig_rejections" ADD COLUMN "status" TEXT NOT NULL DEFAULT 'open';

ALTER TABLE "hrmig_rejections" ADD COLUMN "resolved_by" INTEGER NULL;

ALTER TABLE "hrmig_loads" ADD COLUMN "kind" TEXT NOT NULL DEFAULT 'load';

ALTER TABLE "hrmig_loads" ADD COLUMN "updated" INTEGER NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS "hrmig_rejections_status_id" ON "hrmig_rejections" ("status", "id");
