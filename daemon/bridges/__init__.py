"""Bridges: other protocols onto the same scheduler, cache and voices (docs/architecture.md).

A bridge translates its protocol onto utterd's jobs, syntheses and events; priorities, the phrase
cache, voices and stop semantics stay the scheduler's, so every client gets the same behaviour.
"""
