"""Great Expectations suites over metadata, splits, synthetic sets and near-duplicates."""
