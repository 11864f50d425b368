"""jaxattn's command line: grid runs, performance benchmarks, solving user patterns."""
