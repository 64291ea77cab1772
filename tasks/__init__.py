"""The built-in tasks: datasets, their episode transformations and named suites."""
