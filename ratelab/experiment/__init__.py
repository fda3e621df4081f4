"""What to run, as plain data: the Experiment, its workload (endpoints, think time,
arrivals) and the strategies, described but not built. Knows nothing of the client."""
