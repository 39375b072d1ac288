//! Shared harness for baton's end-to-end tests.
