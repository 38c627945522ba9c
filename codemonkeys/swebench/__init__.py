"""SWE-bench at scale: datasets, environments from the official specs, batch runs and evaluation."""
