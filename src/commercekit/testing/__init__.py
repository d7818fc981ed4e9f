"""Public test helpers: real-server harness, pytest fixtures, contract suites.

- `commercekit.testing.servers` starts real Redis, PostgreSQL, Kafka and nginx
  from their binaries on loopback ports (no Docker needed).
- `commercekit.testing.pytest_plugin` turns them into session fixtures; enable
  it with ``pytest_plugins = ["commercekit.testing.pytest_plugin"]``.
- The contract suites, one per protocol: subclass one per implementation,
  provide its abstract fixture, and pytest runs the whole behaviour on it.

```python
from commercekit.testing import RefreshTokenStoreContract


class TestMyStore(RefreshTokenStoreContract):
    @pytest.fixture
    def store(self):
        return MyRefreshTokenStore()
```

| suite | protocol | abstract fixture |
|---|---|---|
| `EventBusContract` | `EventBus` | `make_bus` (and `publish_raw`, `dead_letters`) |
| `ReservationStoreContract` | `ReservationStore` | `make_store` |
| `RefreshTokenStoreContract` | `RefreshTokenStore` | `store` |

The suites need pytest and hypothesis (``commercekit[dev]``); they are
imported on first use, so the harness works without them.
"""

from typing import TYPE_CHECKING

from commercekit._lazy import lazy_attributes

if TYPE_CHECKING:
    from commercekit.testing.contracts import ReservationStoreContract, StoreFactory
    from commercekit.testing.event_bus import FAST_RETRY, BusFactory, EventBusContract, eventually
    from commercekit.testing.refresh_tokens import Clock, RefreshTokenStoreContract

__all__ = [
    "FAST_RETRY",
    "BusFactory",
    "Clock",
    "EventBusContract",
    "RefreshTokenStoreContract",
    "ReservationStoreContract",
    "StoreFactory",
    "eventually",
]

_LAZY = {
    "FAST_RETRY": "commercekit.testing.event_bus",
    "BusFactory": "commercekit.testing.event_bus",
    "EventBusContract": "commercekit.testing.event_bus",
    "eventually": "commercekit.testing.event_bus",
    "ReservationStoreContract": "commercekit.testing.contracts",
    "StoreFactory": "commercekit.testing.contracts",
    "Clock": "commercekit.testing.refresh_tokens",
    "RefreshTokenStoreContract": "commercekit.testing.refresh_tokens",
}

__getattr__ = lazy_attributes(__name__, _LAZY)
