"""tf_fedscale: trace-driven, FedScale-style simulation around unmodified TFF processes.

The public API is the names in `__all__`, each imported from its module on first use
(PEP 562), so `import tf_fedscale.traces.inspect` does not pay for TensorFlow Federated.
The framework's packages are `tf_fedscale`, `tf_fedscale.tasks`, `tf_fedscale.traces` and
`tf_fedscale.experiments`.
"""

import importlib
import os

# In a source checkout (and in bazel's runfiles tree) tasks/, traces/ and experiments/ sit
# beside this directory; installed, setuptools puts them inside it (pyproject.toml,
# `package-dir`). Searching the checkout root as well makes `tf_fedscale.tasks` the same
# files in both cases, with no installation needed inside the repository.
_SUBPACKAGES = ('tasks', 'traces', 'experiments')
_CHECKOUT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if (not any(os.path.isdir(os.path.join(__path__[0], p)) for p in _SUBPACKAGES) and
    any(os.path.isfile(os.path.join(_CHECKOUT_ROOT, p, '__init__.py')) for p in _SUBPACKAGES)):
  __path__.append(_CHECKOUT_ROOT)

_EXPORTS = {
    'accounting': ('LatencyAccountant', 'RoundOutcome', 'Status'),
    'availability': ('AvailabilityTrace',),
    'checkpoint': ('Checkpointer',),
    'evaluation': ('FederatedEvaluation',),
    'hooks': ('ClientCompletionHook', 'LocalWorkHook', 'RoundEndHook', 'RoundStartHook',
              'StatefulHook'),
    'local_work': ('LocalWork',),
    'oort': ('OortSelector',),
    'population': ('DeviceProfiles', 'Population'),
    'engine.runtime': ('install_local_context', 'local_context', 'stop_all_workers'),
    'selection': ('BaseSelector', 'FastestSelector', 'RoundFeedback', 'Selector',
                  'UniformSelector', 'build_selector', 'register_selector'),
    'simulation': ('RoundResult', 'Simulation', 'SimulationState'),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
  if name not in _MODULE_OF:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(f'{__name__}.{_MODULE_OF[name]}'), name)
  globals()[name] = value
  return value


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))
