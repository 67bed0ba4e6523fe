-- hrmig hire count changes, sqlite dialect: a transaction's tally packed, which hrmig folds.

INSERT INTO "hrmig_hire_counts" (year, department_id, job_id, q1, q2, q3, q4)
SELECT year, department_id, job_id, SUM(q1), SUM(q2), SUM(q3), SUM(q4)
FROM (SELECT g.value ->> 0 AS year, g.value ->> 1 AS department_id, g.value ->> 2 AS job_id,
             g.value ->> 3 AS q1, g.value ->> 4 AS q2, g.value ->> 5 AS q3, g.value ->> 6 AS q4
      FROM "hrmig_hire_count_changes" AS c, json_each(c.tally) AS g)
WHERE true GROUP BY year, department_id, job_id
ON CONFLICT (year, department_id, job_id) DO UPDATE SET
    q1 = q1 + excluded.q1, q2 = q2 + excluded.q2,
    q3 = q3 + excluded.q3, q4 = q4 + excluded.q4;

DROP TABLE "hrmig_hire_count_changes";

CREATE TABLE "hrmig_hire_count_changes" ("tally" BLOB NOT NULL);
