"""GPU nodes: reading NVIDIA's tools into facts (:mod:`sovereign.gpu.report`)
and judging them with their figures (:mod:`sovereign.gpu.check`)."""
