-- hrmig hire counts, sqlite dialect: what the reports read (the views stay their definition).

CREATE TABLE IF NOT EXISTS "hrmig_hire_counts" (
    "year" INTEGER NOT NULL,
    "department_id" INTEGER NOT NULL,
    "job_id" INTEGER NOT NULL,
    "q1" BIGINT NOT NULL,
    "q2" BIGINT NOT NULL,
    "q3" BIGINT NOT NULL,
    "q4" BIGINT NOT NULL,
    PRIMARY KEY ("year", "department_id", "job_id")
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS "hrmig_hire_count_changes" ("tally" TEXT NOT NULL);

INSERT INTO "hrmig_hire_counts"
SELECT CAST(substr("datetime", 1, 4) AS INTEGER), "department_id", "job_id",
       SUM(substr("datetime", 6, 2) BETWEEN '01' AND '03'),
       SUM(substr("datetime", 6, 2) BETWEEN '04' AND '06'),
       SUM(substr("datetime", 6, 2) BETWEEN '07' AND '09'),
       SUM(substr("datetime", 6, 2) BETWEEN '10' AND '12')
FROM "hired_employees" GROUP BY 1, 2, 3;
