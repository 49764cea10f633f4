//! In-process tests of the protocol: every verb and every error path on in-memory IO.
