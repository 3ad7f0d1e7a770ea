//! placeholder while the SQLite store is written.
