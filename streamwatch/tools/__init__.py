"""Tools, never imported by the service: the demo model and its data (demo), benchmarks (bench),
synthetic scenes and clips (synthetic), tiny models of real architectures (tiny)."""
