"""Numbers from predictions: metrics, intervals, paired tests, fairness, the configuration grid."""
