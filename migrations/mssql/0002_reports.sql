-- hrmig report views, mssql dialect (`hrmig schema --dialect mssql --reports`).

IF OBJECT_ID(N'dbo.gold_hires_by_quarter', N'V') IS NULL
    EXEC(N'CREATE VIEW [gold_hires_by_quarter] AS
SELECT YEAR(h.[datetime]) AS [year],
       d.[id] AS [department_id], d.[department], j.[id] AS [job_id], j.[job],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 1 THEN 1 ELSE 0 END) AS [q1],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 2 THEN 1 ELSE 0 END) AS [q2],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 3 THEN 1 ELSE 0 END) AS [q3],
       SUM(CASE WHEN DATEPART(quarter, h.[datetime]) = 4 THEN 1 ELSE 0 END) AS [q4]
FROM [hired_employees] h
JOIN [departments] d ON d.[id] = h.[department_id]
JOIN [jobs] j ON j.[id] = h.[job_id]
GROUP BY YEAR(h.[datetime]), d.[id], d.[department], j.[id], j.[job]');

IF OBJECT_ID(N'dbo.gold_department_hires', N'V') IS NULL
    EXEC(N'CREATE VIEW [gold_department_hires] AS
SELECT YEAR(h.[datetime]) AS [year], d.[id], d.[department], COUNT(*) AS [hired]
FROM [hired_employees] h
JOIN [departments] d ON d.[id] = h.[department_id]
GROUP BY YEAR(h.[datetime]), d.[id], d.[department]');
