//! Example plugin: not written yet.
