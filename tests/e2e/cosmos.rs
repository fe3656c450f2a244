//! End-to-end tests: not written yet.
