"""Loading and calling the Lua scripts of ``lua/`` by SHA."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from functools import cache
from importlib import resources
from typing import Any

from redis import exceptions as redis_errors

SCRIPTS = ("reserve", "transition", "expire_due", "stock", "restore", "kits", "amend", "unsell")


_INCLUDES = {"reserve": ("_allocate",), "amend": ("_allocate",)}
"""Helper files a script needs beyond ``_lib.lua``."""


@cache
def script_source(name: str, guarded: bool) -> str:
    """The script's source: the GUARDED flag, ``_lib.lua``, its helpers, then the script."""
    lua = resources.files(__package__) / "lua"
    flag = "local GUARDED = true\n" if guarded else "local GUARDED = false\n"
    parts = ["_lib", *_INCLUDES.get(name, ()), name]
    return flag + "\n".join((lua / f"{part}.lua").read_text() for part in parts)


class Script:
    """One Lua script: called by SHA, loaded again when Redis answers NOSCRIPT."""

    def __init__(self, name: str, guarded: bool) -> None:
        self.name = name
        self.source = script_source(name, guarded)
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self._loading = asyncio.Lock()
        self._loads = 0

    async def __call__(self, client: Any, keys: Sequence[str], args: Sequence[object]) -> Any:
        """Run the script on `keys` with `args`."""
        loads = self._loads
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)
        except redis_errors.NoScriptError:
            # Many calls in flight all miss at once: one loads, the others wait.
            async with self._loading:
                if self._loads == loads:
                    await client.script_load(self.source)
                    self._loads += 1
            return await client.evalsha(self.sha, len(keys), *keys, *args)
