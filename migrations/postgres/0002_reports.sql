-- hrmig report views, postgres dialect (`hrmig schema --dialect postgres --reports`).

CREATE OR REPLACE VIEW "gold_hires_by_quarter" AS
SELECT CAST(EXTRACT(YEAR FROM h."datetime" AT TIME ZONE 'UTC') AS INTEGER) AS "year",
       d."id" AS "department_id", d."department", j."id" AS "job_id", j."job",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 1) AS "q1",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 2) AS "q2",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 3) AS "q3",
       COUNT(*) FILTER (WHERE EXTRACT(QUARTER FROM h."datetime" AT TIME ZONE 'UTC') = 4) AS "q4"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
JOIN "jobs" j ON j."id" = h."job_id"
GROUP BY 1, d."id", d."department", j."id", j."job";

CREATE OR REPLACE VIEW "gold_department_hires" AS
SELECT CAST(EXTRACT(YEAR FROM h."datetime" AT TIME ZONE 'UTC') AS INTEGER) AS "year",
       d."id", d."department", COUNT(*) AS "hired"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
GROUP BY 1, d."id", d."department";
