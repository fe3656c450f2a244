//! Helpers to run the sluice binary (written with the host runtime).
