//! The one error type of this crate, and the translation of DataFusion's errors into messages that
//! say what went wrong with the caller's SQL and what to do about it.

use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// Why a query could not be answered.
///
/// Every variant except [`QueryError::Lake`] and [`QueryError::Internal`] is the caller's doing
/// (an API maps them to 400); those two are the server's (500).
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    /// The SQL text does not parse. The message carries the line and column.
    #[error("SQL syntax error: {0}")]
    Syntax(String),
    /// More (or fewer) than one statement.
    #[error("{0}")]
    Statements(String),
    /// A statement that is not a read-only query (DDL, DML, `COPY`, `SET`, ...).
    #[error("only read-only queries are allowed (SELECT, WITH, VALUES, EXPLAIN); `{0}` is not one")]
    NotAllowed(String),
    /// A column the table does not have.
    #[error("unknown column `{column}`{hint}; available columns: {available}")]
    UnknownColumn {
        /// The name as written.
        column: String,
        /// `; did you mean `x`?` or empty.
        hint: String,
        /// The columns in scope, comma-separated.
        available: String,
    },
    /// A table that is not registered.
    #[error("unknown table `{table}`; the tables are {available}")]
    UnknownTable {
        /// The name as written.
        table: String,
        /// The registered tables, comma-separated.
        available: String,
    },
    /// Anything else the planner refused: a type mismatch, an unknown function, ...
    #[error("cannot plan the query: {0}")]
    Plan(String),
    /// The query failed while running (e.g. a cast of a bad value).
    #[error("query failed: {0}")]
    Execution(String),
    /// The result has more rows than the limit.
    #[error("the result has more than {limit} rows; add a LIMIT, a WHERE clause or an aggregate to narrow it")]
    TooManyRows {
        /// The row limit in force.
        limit: usize,
    },
    /// The query needed more memory than the engine may use.
    #[error(
        "the query needs more memory than the {limit_mib} MiB allowed; narrow it with a WHERE clause on `time` or aggregate first ({detail})"
    )]
    Memory {
        /// The memory limit in MiB.
        limit_mib: usize,
        /// DataFusion's account of it.
        detail: String,
    },
    /// The query ran longer than the time limit.
    #[error("the query ran longer than {seconds} s and was stopped; narrow it with a WHERE clause on `time`")]
    Timeout {
        /// The time limit in seconds.
        seconds: u64,
    },
    /// The lake directory could not be read.
    #[error("cannot read the audit lake at `{path}`: {detail}")]
    Lake {
        /// The file or directory.
        path: String,
        /// What failed.
        detail: String,
    },
    /// A bug or an environment failure; the message is for the log.
    #[error("internal error in the query engine: {0}")]
    Internal(String),
}

impl QueryError {
    /// Whether the caller's SQL (rather than the server) is at fault.
    pub fn is_user_error(&self) -> bool {
        !matches!(self, Self::Lake { .. } | Self::Internal(_))
    }

    /// Translates a DataFusion error; `tables` are the names registered for this query.
    pub(crate) fn from_datafusion(error: DataFusionError, tables: &[&str]) -> Self {
        let root = root_cause(&error);
        match root {
            DataFusionError::SQL(parser, _) => match parser.as_ref() {
                ParserError::RecursionLimitExceeded => Self::Syntax(
                    "the query is nested too deeply; simplify it (fewer nested subqueries or parentheses)".to_owned(),
                ),
                ParserError::ParserError(msg) | ParserError::TokenizerError(msg) => Self::Syntax(msg.clone()),
            },
            DataFusionError::SchemaError(schema_error, _) => match schema_error.as_ref() {
                SchemaError::FieldNotFound { field, valid_fields } => {
                    let mut names: Vec<&str> = valid_fields.iter().map(|c| c.name.as_str()).collect();
                    names.dedup();
                    let mut seen = std::collections::HashSet::new();
                    names.retain(|n| seen.insert(*n));
                    let wanted = field.name.to_lowercase();
                    let hint = names
                        .iter()
                        .find(|n| n.to_lowercase() == wanted)
                        .map(|n| format!("; did you mean `{n}` (quote it: \"{n}\")?"))
                        .unwrap_or_default();
                    Self::UnknownColumn {
                        column: field.name.clone(),
                        hint,
                        available: names.join(", "),
                    }
                }
                other => Self::Plan(other.to_string()),
            },
            DataFusionError::Plan(msg) => plan_message(msg, tables),
            DataFusionError::NotImplemented(msg) => {
                if msg.contains("only supports a single SQL statement") {
                    Self::Statements(
                        "only one SQL statement is allowed per query; remove the extra `;`-separated statements"
                            .to_owned(),
                    )
                } else {
                    Self::Plan(format!("not supported: {msg}"))
                }
            }
            DataFusionError::ResourcesExhausted(detail) => Self::Memory {
                limit_mib: 0,
                detail: detail.clone(),
            },
            DataFusionError::Execution(msg) => Self::Execution(msg.clone()),
            DataFusionError::ArrowError(e, _) => Self::Execution(e.to_string()),
            DataFusionError::ParquetError(e) => Self::Lake {
                path: "events".to_owned(),
                detail: e.to_string(),
            },
            DataFusionError::ObjectStore(e) => Self::Lake {
                path: "events".to_owned(),
                detail: e.to_string(),
            },
            DataFusionError::IoError(e) => Self::Lake {
                path: "events".to_owned(),
                detail: e.to_string(),
            },
            DataFusionError::External(inner) => match inner.downcast_ref::<QueryError>() {
                Some(ours) => ours.clone(),
                None => Self::Internal(inner.to_string()),
            },
            other => Self::Internal(other.to_string()),
        }
    }
}

/// The innermost error under contexts, diagnostics and shared wrappers.
fn root_cause(error: &DataFusionError) -> &DataFusionError {
    match error {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => root_cause(inner),
        DataFusionError::Shared(inner) => root_cause(inner),
        DataFusionError::Collection(errors) => errors.first().map_or(error, root_cause),
        other => other,
    }
}

fn plan_message(msg: &str, tables: &[&str]) -> QueryError {
    let available = tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ");
    // DataFusion says "table 'datafusion.public.x' not found".
    if let Some(rest) = msg.strip_prefix("table '")
        && let Some(name) = rest.strip_suffix("' not found")
    {
        let short = name.rsplit('.').next().unwrap_or(name);
        return QueryError::UnknownTable {
            table: short.to_owned(),
            available,
        };
    }
    for kind in [
        "DDL not supported: ",
        "DML not supported: ",
        "Statement not supported: ",
    ] {
        if let Some(what) = msg.strip_prefix(kind) {
            return QueryError::NotAllowed(what.to_owned());
        }
    }
    QueryError::Plan(msg.to_owned())
}
