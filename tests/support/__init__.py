"""Helpers shared by the tests: servers, fakes, fixtures that are plain modules."""
