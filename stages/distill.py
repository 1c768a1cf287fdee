"""Train one step of one student: `python -m stages.distill <method> <student> [<step>]`.

The method (a file in pipeline/methods/) says what the step does; its stage in dvc.yaml is
`<method>@<student>` for a one-step method, `<method>_<step>@<student>` otherwise."""

from pipeline.artifacts import write_json
from pipeline.errors import ConfigError
from pipeline.methods import methods
from pipeline.orchestration.stage import stage
from pipeline.params.config import Params

USAGE = "usage: python -m stages.distill <method> <student> [<step>]"


@stage(data_parallel=True)
def main(params: Params, args: list[str]) -> None:
    if len(args) not in (2, 3):
        raise ConfigError(f"{USAGE}; methods: {', '.join(methods())}")
    method = methods().get(args[0])
    if method is None:
        raise ConfigError(f"{USAGE}: unknown method {args[0]!r}; methods: {', '.join(methods())}")
    students = params.section(method.name)
    name = args[1]
    if name not in students:
        have = ", ".join(students) or "none"
        raise ConfigError(f"{method.name}.{name}: no such student in params (have: {have})")
    steps = {s.name: s for s in method.steps}
    step = steps.get(args[2]) if len(args) == 3 else method.steps[0] if len(steps) == 1 else None
    if step is None:
        raise ConfigError(f"{USAGE}: {method.name} has steps {', '.join(steps)}")
    paths = method.paths(step, name)
    summary = step.run(method.run_of(step, params, name, paths))
    write_json(paths["report"], summary)


if __name__ == "__main__":
    main()
