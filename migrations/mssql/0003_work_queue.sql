-- hrmig work queue, mssql dialect: rejection statuses, operation kinds, updated rows.

IF COL_LENGTH(N'dbo.hrmig_rejections', N'status') IS NULL
    ALTER TABLE [hrmig_rejections] ADD [status] NVARCHAR(255) NOT NULL CONSTRAINT [hrmig_rejections_status_default] DEFAULT N'open';

IF COL_LENGTH(N'dbo.hrmig_rejections', N'resolved_by') IS NULL
    ALTER TABLE [hrmig_rejections] ADD [resolved_by] BIGINT NULL;

IF COL_LENGTH(N'dbo.hrmig_loads', N'kind') IS NULL
    ALTER TABLE [hrmig_loads] ADD [kind] NVARCHAR(255) NOT NULL CONSTRAINT [hrmig_loads_kind_default] DEFAULT N'load';

IF COL_LENGTH(N'dbo.hrmig_loads', N'updated') IS NULL
    ALTER TABLE [hrmig_loads] ADD [updated] BIGINT NOT NULL CONSTRAINT [hrmig_loads_updated_default] DEFAULT 0;

IF NOT EXISTS (SELECT 1 FROM sys.columns c JOIN sys.index_columns ic
    ON ic.object_id = c.object_id AND ic.column_id = c.column_id
    WHERE c.object_id = OBJECT_ID(N'dbo.hrmig_rejections') AND c.name = N'status')
    EXEC(N'CREATE INDEX [hrmig_rejections_status_id] ON [hrmig_rejections] ([status], [id])');
