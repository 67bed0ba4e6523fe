-- hrmig hire count changes, postgres dialect: a tally as one row of arrays.

DO $packed$
BEGIN
    IF (SELECT data_type FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'hrmig_hire_count_changes'
          AND column_name = 'year') = 'integer' THEN
        ALTER TABLE "hrmig_hire_count_changes" RENAME TO "hrmig_hire_count_changes_rows";
        CREATE TABLE IF NOT EXISTS "hrmig_hire_count_changes" (
            "year" INTEGER[] NOT NULL,
            "department_id" INTEGER[] NOT NULL,
            "job_id" INTEGER[] NOT NULL,
            "q1" BIGINT[] NOT NULL,
            "q2" BIGINT[] NOT NULL,
            "q3" BIGINT[] NOT NULL,
            "q4" BIGINT[] NOT NULL
        );
        INSERT INTO "hrmig_hire_count_changes" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT array_agg(year), array_agg(department_id), array_agg(job_id),
               array_agg(q1), array_agg(q2), array_agg(q3), array_agg(q4)
        FROM "hrmig_hire_count_changes_rows" HAVING COUNT(*) > 0;
        DROP TABLE "hrmig_hire_count_changes_rows";
    END IF;
END
$packed$;

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
        SELECT array_agg(y), array_agg(d), array_agg(j), array_agg(a), array_agg(b), array_agg(c), array_agg(e)
        FROM (SELECT date_part('year', "datetime" AT TIME ZONE 'UTC')::int, "department_id", "job_id",
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 1),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 2),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 3),
               -COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 4)
        FROM "hrmig_old" WHERE isfinite("datetime") GROUP BY 1, 2, 3) AS t(y, d, j, a, b, c, e) HAVING COUNT(*) > 0;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO "hrmig_hire_count_changes" (year, department_id, job_id, q1, q2, q3, q4)
        SELECT array_agg(y), array_agg(d), array_agg(j), array_agg(a), array_agg(b), array_agg(c), array_agg(e)
        FROM (SELECT date_part('year', "datetime" AT TIME ZONE 'UTC')::int, "department_id", "job_id",
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 1),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 2),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 3),
               COUNT(*) FILTER (WHERE date_part('quarter', "datetime" AT TIME ZONE 'UTC') = 4)
        FROM "hrmig_new" WHERE isfinite("datetime") GROUP BY 1, 2, 3) AS t(y, d, j, a, b, c, e) HAVING COUNT(*) > 0;
    END IF;
    RETURN NULL;
END
$count$;
