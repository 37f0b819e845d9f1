"""The pipeline language, pure (no I/O beyond reading the file it is given):

- `yamlpos`: YAML with line:col for every value, bounded in size and depth;
- `model`: the pipeline models, their checks (file:line:col errors) and the expanded job plan;
- `dag`: the job graph (cycles, order, critical path);
- `expr`: the `if:` condition language.

Nothing here runs a job: the scheduler (`engine.pipeline`) and the importers (`engine.interop`)
both build on it.
"""
