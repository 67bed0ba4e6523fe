-- hrmig schema, mssql dialect: generated from the data dictionary
-- (`hrmig schema --dialect mssql`); every statement is idempotent.

IF OBJECT_ID(N'dbo.departments', N'U') IS NULL
BEGIN
    CREATE TABLE [departments] (
    [id] INT NOT NULL PRIMARY KEY,
    [department] NVARCHAR(255) NOT NULL
);
END;

IF OBJECT_ID(N'dbo.jobs', N'U') IS NULL
BEGIN
    CREATE TABLE [jobs] (
    [id] INT NOT NULL PRIMARY KEY,
    [job] NVARCHAR(255) NOT NULL
);
END;

IF OBJECT_ID(N'dbo.hired_employees', N'U') IS NULL
BEGIN
    CREATE TABLE [hired_employees] (
    [id] INT NOT NULL PRIMARY KEY,
    [name] NVARCHAR(255) NOT NULL,
    [datetime] DATETIME2(3) NOT NULL,
    [department_id] INT NOT NULL REFERENCES [departments] ([id]),
    [job_id] INT NOT NULL REFERENCES [jobs] ([id])
);
    CREATE INDEX [hired_employees_department_id] ON [hired_employees] ([department_id]);
    CREATE INDEX [hired_employees_job_id] ON [hired_employees] ([job_id]);
END;

IF OBJECT_ID(N'dbo.hrmig_rejections', N'U') IS NULL
BEGIN
    CREATE TABLE [hrmig_rejections] (
    [id] BIGINT IDENTITY(1,1) PRIMARY KEY,
    [table_name] NVARCHAR(255) NOT NULL,
    [source] NVARCHAR(MAX) NOT NULL,
    [position] BIGINT NOT NULL,
    [raw] NVARCHAR(MAX) NOT NULL,
    [errors] NVARCHAR(MAX) NOT NULL,
    [rejected_at] DATETIME2(3) NOT NULL
);
    CREATE INDEX [hrmig_rejections_table_name_id] ON [hrmig_rejections] ([table_name], [id]);
END;

IF OBJECT_ID(N'dbo.hrmig_loads', N'U') IS NULL
BEGIN
    CREATE TABLE [hrmig_loads] (
    [id] BIGINT IDENTITY(1,1) PRIMARY KEY,
    [table_name] NVARCHAR(255) NOT NULL,
    [source] NVARCHAR(MAX) NOT NULL,
    [sha256] NVARCHAR(255) NOT NULL,
    [status] NVARCHAR(255) NOT NULL,
    [rows_read] BIGINT NOT NULL,
    [inserted] BIGINT NOT NULL,
    [rejected] BIGINT NOT NULL,
    [blank] BIGINT NOT NULL,
    [message] NVARCHAR(MAX) NULL,
    [started_at] DATETIME2(3) NOT NULL,
    [finished_at] DATETIME2(3) NOT NULL
);
    CREATE INDEX [hrmig_loads_table_name_sha256] ON [hrmig_loads] ([table_name], [sha256]);
END;

IF OBJECT_ID(N'dbo.hrmig_idempotency', N'U') IS NULL
BEGIN
    CREATE TABLE [hrmig_idempotency] (
    [id] BIGINT IDENTITY(1,1) PRIMARY KEY,
    [key] NVARCHAR(255) NOT NULL,
    [fingerprint] NVARCHAR(255) NOT NULL,
    [response] NVARCHAR(MAX) NOT NULL,
    [created_at] DATETIME2(3) NOT NULL
);
    CREATE UNIQUE INDEX [hrmig_idempotency_key] ON [hrmig_idempotency] ([key]);
END;

IF OBJECT_ID(N'dbo.hrmig_jobs', N'U') IS NULL
BEGIN
    CREATE TABLE [hrmig_jobs] (
    [id] NVARCHAR(64) NOT NULL PRIMARY KEY,
    [status] NVARCHAR(255) NOT NULL,
    [request] NVARCHAR(MAX) NOT NULL,
    [tables] NVARCHAR(MAX) NOT NULL,
    [progress] NVARCHAR(MAX) NOT NULL,
    [error] NVARCHAR(MAX) NULL,
    [created_ms] BIGINT NOT NULL,
    [heartbeat_ms] BIGINT NOT NULL
);
    CREATE INDEX [hrmig_jobs_created_ms] ON [hrmig_jobs] ([created_ms]);
END;

