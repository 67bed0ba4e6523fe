-- hrmig work queue, postgres dialect: rejection statuses, operation kinds, updated rows.

ALTER TABLE "hrmig_rejections" ADD COLUMN IF NOT EXISTS "status" VARCHAR(255) NOT NULL DEFAULT 'open';

ALTER TABLE "hrmig_rejections" ADD COLUMN IF NOT EXISTS "resolved_by" BIGINT NULL;

ALTER TABLE "hrmig_loads" ADD COLUMN IF NOT EXISTS "kind" VARCHAR(255) NOT NULL DEFAULT 'load';

ALTER TABLE "hrmig_loads" ADD COLUMN IF NOT EXISTS "updated" BIGINT NOT NULL DEFAULT 0;

CREATE INDEX IF NOT EXISTS "hrmig_rejections_status_id" ON "hrmig_rejections" ("status", "id");
