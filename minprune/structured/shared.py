"""Parameters held by several modules (weight tying): pruned together, and still shared afterwards.

When two modules hold the same parameter tensor (`c.weight = a.weight`), removing a row of one removes it from the
other: every dim of the shared tensor must lose the same entries in all its holders, so their channel groups are
tied. A dim that one holder prunes and another cannot follow freezes those channels. After surgery the holders
get one tensor again. See notebooks/06_structured_pruning.ipynb.
"""

from __future__ import annotations

from torch import nn

from minprune.structured.channel_rules import rule_for


def shared_parameters(model: nn.Module) -> list[list[tuple[str, str]]]:
    """[(module name, parameter name), ...] for every parameter held by more than one module."""
    holders, names = {}, {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        if names.setdefault(id(module), module_name) != module_name:
            continue  # the same module registered twice is one module
        for param_name, p in module.named_parameters(recurse=False):
            holders.setdefault(id(p), []).append((module_name, param_name))
    return [h for h in holders.values() if len(h) > 1]


def _dims(tracer, module_name: str, param_name: str) -> dict:
    """{dim: channel layout} of one holder's parameter (empty when forward does not prune it)."""
    qual = f"{module_name}.{param_name}"
    dims = {}
    if qual in tracer.params:
        dim, layout = tracer.params[qual]
        dims[dim] = layout
    rule = rule_for(tracer.model.get_submodule(module_name))
    if rule is not None and module_name in tracer.outputs and param_name in rule.channel_tensors:
        dims[rule.channel_tensors[param_name]] = ((tracer.outputs[module_name], 1),)
    if rule is not None and module_name in tracer.inputs and param_name in rule.input_tensors:
        dims[rule.input_tensors[param_name]] = tracer.inputs[module_name]
    return dims


def tie_shared_parameters(tracer) -> None:
    """Tie the channel groups that index the same dim of a shared parameter (tracer: the dependency tracer)."""
    for holders in shared_parameters(tracer.model):
        names = " and ".join(f"{m}.{p}" for m, p in holders)
        found = [_dims(tracer, m, p) for m, p in holders]
        for dim in sorted({d for dims in found for d in dims}):
            layouts = [dims[dim] for dims in found if dim in dims]
            if len(layouts) < len(holders):
                for layout in layouts:  # one holder prunes this dim, another cannot follow it
                    tracer.s.freeze(layout, f"parameter shared by {names}")
                continue
            tracer.tie(f"parameter shared by {names}", layouts)


def reshare(model: nn.Module, holders_list) -> None:
    """Make every holder of each shared parameter hold the first holder's (rebuilt) tensor again."""
    for holders in holders_list:
        (first_module, first_param), *rest = holders
        p = getattr(model.get_submodule(first_module), first_param)
        for module_name, param_name in rest:
            module = model.get_submodule(module_name)
            if getattr(module, param_name).shape != p.shape:
                raise RuntimeError(f"shared parameter {module_name}.{param_name} was rebuilt with shape "
                                   f"{tuple(getattr(module, param_name).shape)}, its twin with {tuple(p.shape)}")
            setattr(module, param_name, p)
