//! The OpenAPI 3 document and its two routes (`/api/openapi.json` and the
//! docs page at `/api/docs`): paths and response types from the handlers'
//! annotations, row schemas from the data dictionary.

use super::error::{ErrorBody, ErrorDetail};
use super::routes::{backups, health, loads, metrics, rejections, reports, tables};
use crate::dictionary::{ColumnType, MAX_STRING_CHARS, Table};
use axum::Router;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::request_body::{RequestBody, RequestBodyBuilder};
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, KnownFormat, Object,
    ObjectBuilder, SchemaFormat, SchemaType, Type,
};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Schema};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hrmig",
        description = "Validated ingest of HR data (departments, jobs, hired employees), the rejection log, historic loads and gold-zone reports. Rows that break a data rule are never inserted and never lost: they are logged with their reasons. Every route but /api/health may also answer 408 `request_timeout` (the request body made no progress within the body timeout; the connection is closed), 429 `rate_limited` and 503 `overloaded` (the concurrency cap), both with Retry-After."
    ),
    paths(
        health::health,
        metrics::metrics,
        tables::tables,
        tables::post_rows,
        tables::get_rows,
        tables::get_row,
        tables::post_batches,
        loads::post_loads,
        loads::list_jobs,
        loads::get_load,
        loads::run_load,
        loads::get_loads,
        loads::undo_load,
        rejections::list,
        rejections::summary,
        rejections::retry,
        rejections::fix,
        rejections::dismiss,
        reports::hires_by_quarter,
        reports::departments_above_mean,
        backups::post_backups,
        backups::get_backups,
        backups::prune,
        backups::restore,
        backups::verify
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "ingest", description = "Batches of 1 to 1000 rows"),
        (name = "read", description = "Tables and rows"),
        (name = "rejections", description = "The rejection log, worked as a queue: retry, fix, dismiss"),
        (name = "loads", description = "Historic CSV loads, the history of operations, and undo"),
        (name = "reports", description = "Gold-zone reports"),
        (name = "backups", description = "Avro backups, verification and restore"),
        (name = "service", description = "Health and metrics")
    )
)]
struct ApiDoc;

/// The document as JSON and the interactive docs page for it, whose assets
/// are compiled in (it works offline).
pub(super) fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/api/openapi.json",
            get(|| async { axum::Json(document()) }),
        )
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/api/docs").config(
                utoipa_swagger_ui::Config::from("/api/openapi.json").try_it_out_enabled(true),
            ),
        )
}

/// Schema name of a table's row object.
fn row_schema_name(table: Table) -> String {
    format!("{}_row", table.name())
}

/// A table's row object, from the dictionary: every column required, no others.
fn row_schema(table: Table) -> Schema {
    let mut object = ObjectBuilder::new()
        .description(Some(format!("A row of {}", table.name())))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for column in table.columns() {
        let property = match column.ty {
            ColumnType::Integer => ObjectBuilder::new()
                .schema_type(Type::Integer)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32))),
            ColumnType::String => ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(MAX_STRING_CHARS)),
            ColumnType::DateTime => ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        }
        .description(Some(column.description));
        object = object.property(column.name, property).required(column.name);
    }
    object.build().into()
}

/// A row of `table` that its rules accept, from the dictionary: an id
/// well above small hand-typed ones, parents 1, names and a hire time.
pub fn example_row(table: Table) -> serde_json::Value {
    let mut row = serde_json::Map::new();
    for (i, column) in table.columns().iter().enumerate() {
        let value = match column.ty {
            ColumnType::Integer if i == Table::PRIMARY_KEY => serde_json::json!(900_001),
            ColumnType::Integer => serde_json::json!(1),
            ColumnType::String => serde_json::json!(format!("Example {}", column.name)),
            ColumnType::DateTime => serde_json::json!("2021-07-27T16:02:08Z"),
        };
        row.insert(column.name.to_owned(), value);
    }
    serde_json::Value::Object(row)
}

/// The same row as a line of the historic CSV format.
fn example_csv(table: Table, row: &serde_json::Value) -> String {
    let fields: Vec<String> = table
        .columns()
        .iter()
        .map(|c| match &row[c.name] {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    fields.join(",") + "\n"
}

/// The document served at `/api/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    let components = doc.components.get_or_insert_with(Default::default);
    for table in Table::ALL {
        components
            .schemas
            .insert(row_schema_name(table), RefOr::T(row_schema(table)));
    }
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    if let Some(post) = post_of(&mut doc, "/api/tables/{table}/rows") {
        post.request_body = Some(RefOr::T(rows_body()));
    }
    if let Some(post) = post_of(&mut doc, "/api/batches") {
        post.request_body = Some(RefOr::T(batches_body()));
    }
    if let Some(post) = post_of(&mut doc, "/api/rejections/{id}/fix") {
        post.request_body = Some(RefOr::T(fix_body()));
    }
    // A started job links to the routes that take its id, so a client (or
    // a stateful test) can follow it.
    if let Some(post) = post_of(&mut doc, "/api/loads")
        && let Some(RefOr::T(accepted)) = post.responses.responses.get_mut("202")
    {
        for (name, operation) in [("job", "get_load"), ("run", "run_load")] {
            let link = LinkBuilder::new()
                .operation_id(operation)
                .parameter("id", "$response.body#/id")
                .build();
            accepted.links.insert(name.to_owned(), RefOr::T(link));
        }
    }
    // Bodies whose every field has a default may be left out; utoipa
    // would mark them required (or, as `Option`, nullable, which they are not).
    for path in [
        "/api/backups",
        "/api/loads",
        "/api/tables/{table}/restore",
        "/api/tables/{table}/verify",
        "/api/rejections/retry",
    ] {
        if let Some(post) = post_of(&mut doc, path)
            && let Some(RefOr::T(body)) = post.request_body.as_mut()
        {
            body.required = Some(utoipa::openapi::Required::False);
        }
    }
    doc
}

/// The POST operation of `path`, if the document has one.
fn post_of<'d>(
    doc: &'d mut utoipa::openapi::OpenApi,
    path: &str,
) -> Option<&'d mut utoipa::openapi::path::Operation> {
    doc.paths.paths.get_mut(path)?.post.as_mut()
}

/// Any JSON value is accepted as a row: one that breaks the table's rules
/// (the `<table>_row` schema) is answered in the 200 response and logged,
/// not refused with the batch.
fn any_row() -> Object {
    Object::with_type(SchemaType::AnyValue)
}

/// The body of `POST /api/tables/{table}/rows`: JSON rows or CSV lines.
fn rows_body() -> RequestBody {
    let rows = ArrayBuilder::new()
        .items(any_row())
        .min_items(Some(1))
        .max_items(Some(crate::ops::ingest::MAX_BATCH_ROWS))
        .description(Some(
            "Rows of the table: each should match `<table>_row`; one that does not is rejected in the response, not the batch",
        ));
    // One valid example body per table, named by the table: "Try it out"
    // then offers a body that the table it is sent to accepts.
    let examples = |csv: bool| {
        Table::ALL.map(|table| {
            let row = example_row(table);
            let value = match csv {
                true => serde_json::Value::String(example_csv(table, &row)),
                false => serde_json::Value::Array(vec![row]),
            };
            let example = ExampleBuilder::new()
                .summary(format!("a row of {}", table.name()))
                .value(Some(value))
                .build();
            (table.name(), example)
        })
    };
    RequestBodyBuilder::new()
        .description(Some(
            "A JSON array of row objects of the table (see the `<table>_row` schemas), or text/csv lines in the historic format",
        ))
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(rows))
                .examples_from_iter(examples(false))
                .build(),
        )
        .content(
            "text/csv",
            ContentBuilder::new()
                .schema(Some(
                    // No `type`: a text/csv body is text whatever it spells.
                    ObjectBuilder::new()
                        .schema_type(SchemaType::AnyValue)
                        .description(Some("One record per line; at least one"))
                        .pattern(Some("[^\r\n]")),
                ))
                .examples_from_iter(examples(true))
                .build(),
        )
        .required(Some(utoipa::openapi::Required::True))
        .build()
}

/// The body of `POST /api/rejections/{id}/fix`: one row object of some
/// table (which one is the rejection's, which no schema can say).
fn fix_body() -> RequestBody {
    let mut row = AnyOfBuilder::new().description(Some(
        "A `<table>_row` object of the rejection's table; another table's row is 422",
    ));
    for table in Table::ALL {
        row = row.item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
            row_schema_name(table),
        )));
    }
    RequestBodyBuilder::new()
        .description(Some("The corrected row: one JSON object"))
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(row)).build(),
        )
        .required(Some(utoipa::openapi::Required::True))
        .build()
}

/// The body of `POST /api/batches`: rows by table, at least one in all.
fn batches_body() -> RequestBody {
    let mut tables = ObjectBuilder::new()
        .description(Some(
            "Rows by table (`<table>_row` each), 1 to 1000 in all; parents are inserted first",
        ))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let mut some_rows = AnyOfBuilder::new();
    for table in Table::ALL {
        let array = || {
            ArrayBuilder::new()
                .items(any_row())
                .max_items(Some(crate::ops::ingest::MAX_BATCH_ROWS))
        };
        tables = tables.property(table.name(), array());
        some_rows = some_rows.item(
            ObjectBuilder::new()
                .property(table.name(), array().min_items(Some(1)))
                .required(table.name()),
        );
    }
    let tables = AllOfBuilder::new().item(tables).item(some_rows);
    RequestBodyBuilder::new()
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(tables)).build(),
        )
        .required(Some(utoipa::openapi::Required::True))
        .build()
}
