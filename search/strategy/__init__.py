"""Search strategy: cost models, the exact multiple-choice knapsack, constrained search, plots."""
