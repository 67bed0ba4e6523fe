-- hrmig hire counts, postgres dialect: what the reports read (the views stay their definition).

CREATE TABLE IF NOT EXISTS "hrmig_hire_counts" (
    "year" INTEGER NOT NULL,
    "department_id" INTEGER NOT NULL,
    "job_id" INTEGER NOT NULL,
    "q1" BIGINT NOT NULL,
    "q2" BIGINT NOT NULL,
    "q3" BIGINT NOT NULL,
    "q4" BIGINT NOT NULL,
    PRIMARY KEY ("year", "department_id", "job_id")
);

CREATE TABLE IF NOT EXISTS "hrmig_hire_count_changes" (
    "year" INTEGER NOT NULL,
    "department_id" INTEGER NOT NULL,
    "job_id" INTEGER NOT NULL,
    "q1" BIGINT NOT NULL,
    "q2" BIGINT NOT NULL,
    "q3" BIGINT NOT NULL,
    "q4" BIGINT NOT NULL
);

CREATE TABLE IF NOT EXISTS "hrmig_hire_inserts_uncounted" ("at" TIMESTAMP(3) WITH TIME ZONE NOT NULL);

CREATE OR REPLACE FUNCTION "hrmig_count_hires"() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $count$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- A fold running now commits first: its counts are emptied too.
        PERFORM pg_advisory_xact_lock(1752329577, '"hrmig_hire_counts"'::regclass::oid::int);
        DELETE FROM "hrmig_hire_inserts_uncounted";
        DELETE FROM "hrmig_hire_count_changes";
        DELETE FROM "hrmig_hire_counts";
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF current_setting('hrmig.counted', true) IS DISTINCT FROM 'on' THEN
            INSERT INTO "hrmig_hire_inserts_uncounted" VALUES (now());
        END IF;
        RETURN NULL;
    END IF;
    INSERT INTO "hrmig_hire_count_changes" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT date_part('year', "datetime" AT TIME ZONE 'UTC')::int, "department_id", "job_id",
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 1),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 2),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 3),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 4)
        FROM "hrmig_old" WHERE isfinite("datetime") GROUP BY 1, 2, 3;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO "hrmig_hire_count_changes" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT date_part('year', "datetime" AT TIME ZONE 'UTC')::int, "department_id", "job_id",
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 1),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 2),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 3),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 4)
        FROM "hrmig_new" WHERE isfinite("datetime") GROUP BY 1, 2, 3;
    END IF;
    RETURN NULL;
END
$count$;

DO $made$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                   WHERE tgrelid = '"hired_employees"'::regclass AND tgname = 'hrmig_count_inserts') THEN
        LOCK TABLE "hired_employees" IN SHARE ROW EXCLUSIVE MODE;
        CREATE TRIGGER "hrmig_count_inserts" AFTER INSERT ON "hired_employees" FOR EACH STATEMENT
            EXECUTE FUNCTION "hrmig_count_hires"();
        CREATE TRIGGER "hrmig_count_updates" AFTER UPDATE ON "hired_employees" REFERENCING OLD TABLE AS "hrmig_old" NEW TABLE AS "hrmig_new" FOR EACH STATEMENT
            EXECUTE FUNCTION "hrmig_count_hires"();
        CREATE TRIGGER "hrmig_count_deletes" AFTER DELETE ON "hired_employees" REFERENCING OLD TABLE AS "hrmig_old" FOR EACH STATEMENT
            EXECUTE FUNCTION "hrmig_count_hires"();
        CREATE TRIGGER "hrmig_count_truncates" AFTER TRUNCATE ON "hired_employees" FOR EACH STATEMENT
            EXECUTE FUNCTION "hrmig_count_hires"();
        DELETE FROM "hrmig_hire_inserts_uncounted";
        DELETE FROM "hrmig_hire_count_changes";
        DELETE FROM "hrmig_hire_counts";
        INSERT INTO "hrmig_hire_counts" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT date_part('year', "datetime" AT TIME ZONE 'UTC')::int, "department_id", "job_id",
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 1),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 2),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 3),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 4)
        FROM "hired_employees" WHERE isfinite("datetime") GROUP BY 1, 2, 3;
    END IF;
END
$made$;
