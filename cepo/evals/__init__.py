"""The evaluation harness: datasets, a resumable harness, and the accuracy-against-compute report."""
