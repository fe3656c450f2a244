//! Emulator: not written yet.
