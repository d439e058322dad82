//! SQL over the audit lake.
