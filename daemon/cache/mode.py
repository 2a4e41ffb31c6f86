"""How one request uses the phrase cache (a request field, a job's setting, the store's input)."""

from typing import Literal

CacheMode = Literal["auto", "refresh", "off"]
"""`auto`: replay a hit, synthesize and store a miss; `refresh`: synthesize anew and replace the
entry; `off`: synthesize, neither read nor store."""
