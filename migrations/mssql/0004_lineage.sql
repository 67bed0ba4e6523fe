-- hrmig lineage, mssql dialect: the rows each operation wrote, and undo.

IF COL_LENGTH(N'dbo.hrmig_loads', N'undone_by') IS NULL
    ALTER TABLE [hrmig_loads] ADD [undone_by] BIGINT NULL;

IF COL_LENGTH(N'dbo.hrmig_loads', N'removed') IS NULL
    ALTER TABLE [hrmig_loads] ADD [removed] BIGINT NOT NULL CONSTRAINT [hrmig_loads_removed_default] DEFAULT 0;

IF OBJECT_ID(N'dbo.hrmig_lineage', N'U') IS NULL
BEGIN
    CREATE TABLE [hrmig_lineage] (
    [operation] BIGINT NOT NULL,
    [table_name] NVARCHAR(255) NOT NULL,
    [first_id] BIGINT NOT NULL,
    [last_id] BIGINT NOT NULL,
    [first_position] BIGINT NULL
);
    CREATE INDEX [hrmig_lineage_table_name_first_id] ON [hrmig_lineage] ([table_name], [first_id]);
    CREATE INDEX [hrmig_lineage_operation_first_id] ON [hrmig_lineage] ([operation], [first_id]);
END;
