"""Plugins: pluggy hooks on the reservation lifecycle, email rendering and more.

```python
from commercekit.plugins import PluginManager, hookimpl

class Audit:
    @hookimpl
    def commercekit_reservation_expired(self, reservation):
        print("expired", reservation.id)

plugins = PluginManager([Audit()])   # plus every installed `commercekit` plugin
plugins.reservation_expired(reservation)
```

The hooks are listed, with their docs, in `commercekit.plugins.hookspecs`.
"""

from commercekit.plugins.hookspecs import PROJECT, hookimpl, hookspec
from commercekit.plugins.manager import PluginManager

__all__ = ["PROJECT", "PluginManager", "hookimpl", "hookspec"]
