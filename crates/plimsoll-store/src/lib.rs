//! The supervisor's embedded store.
