"""What every layer of eqcg runs on: atomic writes (:mod:`~eqcg.runtime.atomic`), output
ownership and locks (:mod:`~eqcg.runtime.outputs`), the error boundary
(:mod:`~eqcg.runtime.boundary`), Ctrl-C / SIGTERM handling (:mod:`~eqcg.runtime.interrupt`),
``torchrun`` process groups (:mod:`~eqcg.runtime.distributed`), checks of user arguments
(:mod:`~eqcg.runtime.arguments`), safe names (:mod:`~eqcg.runtime.names`), YAML reading
(:mod:`~eqcg.runtime.yaml_files`), profiler ranges (:mod:`~eqcg.runtime.profiling`) and run
records (:mod:`~eqcg.runtime.run_info`)."""
