"""The ML library of the steps: data sets, synthetic data, the held-out split, the recipe,
estimators, the pyfunc model, metrics, the evaluation gate and report, servability."""
