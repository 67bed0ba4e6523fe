-- hrmig report views, sqlite dialect (`hrmig schema --dialect sqlite --reports`).

CREATE VIEW IF NOT EXISTS "gold_hires_by_quarter" AS
SELECT CAST(substr(h."datetime", 1, 4) AS INTEGER) AS "year",
       d."id" AS "department_id", d."department", j."id" AS "job_id", j."job",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '01' AND '03' THEN 1 ELSE 0 END) AS "q1",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '04' AND '06' THEN 1 ELSE 0 END) AS "q2",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '07' AND '09' THEN 1 ELSE 0 END) AS "q3",
       SUM(CASE WHEN substr(h."datetime", 6, 2) BETWEEN '10' AND '12' THEN 1 ELSE 0 END) AS "q4"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
JOIN "jobs" j ON j."id" = h."job_id"
GROUP BY 1, d."id", j."id";

CREATE VIEW IF NOT EXISTS "gold_department_hires" AS
SELECT CAST(substr(h."datetime", 1, 4) AS INTEGER) AS "year",
       d."id", d."department", COUNT(*) AS "hired"
FROM "hired_employees" h
JOIN "departments" d ON d."id" = h."department_id"
GROUP BY 1, d."id";
