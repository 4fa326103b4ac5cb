"""The mobile runtimes, one module each; every module here registers its runtime's `Backend`.

The backend registry (`measurement.backends.BACKENDS`) imports every module of this package
the first time it is asked, so adding a runtime is adding a module: a descriptor with
`mobile=True` (its packages, precisions, program file and exporter, the phone's benchmark
binary and its flags, its profiler, its delegate) passed to `backends.register`, and a
factory that loads the exported program (`programs.exported`) and returns a
`programs.MobileRunnable`. Import the runtime's own packages inside functions only:
`ablate --help` imports this package.
"""
