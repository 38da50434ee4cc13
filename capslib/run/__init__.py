"""Running the grid: the results store, the runner that plans and writes it, its executors
(in-process, Dask) and the progress of a run."""
