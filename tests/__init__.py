"""The test suite: tests/README.md says where each kind of test lives."""
