"""Built-in step kinds, one module each. Importing this package imports every module in it, which
registers each kind (@step_kind): adding a kind is adding one file here (then `cog -r README.md`
for the README's table)."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):  # sorted by name: the same order everywhere
    importlib.import_module(f"{__name__}.{_module.name}")
