//! Example HGCM service (echo, blocking wait, host calls): a test fixture and a template for plugin authors.
