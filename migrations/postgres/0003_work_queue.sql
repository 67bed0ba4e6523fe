-- hrmig work queue, postgres dialect: rejection statuses and operation kinds.

ALTER TABLE "hrmig_rejections" ADD COLUMN IF NOT EXISTS "status" VARCHAR(255) NOT NULL DEFAULT 'open';

ALTER TABLE "hrmig_rejections" ADD COLUMN IF NOT EXISTS "resolved_by" BIGINT NULL;

ALTER TABLE "hrmig_loads" ADD COLUMN IF NOT EXISTS "kind" VARCHAR(255) NOT NULL DEFAULT 'load';

CREATE INDEX IF NOT EXISTS "hrmig_rejections_status_id" ON "hrmig_rejections" ("status", "id");
