"""Exercise markers.

A function that students write is decorated with ``@exercise("2.1", "...")`` and
its body holds ``# BEGIN SOLUTION`` ... ``# END SOLUTION``. ``make student``
replaces each such region by ``raise NotImplementedError("Exercise 2.1: ...")``.

Calls go through :data:`REGISTRY`, so the grader can run exercise 5.1's tests
with every *other* exercise replaced by a trusted implementation: an unfinished
lesson 2 does not break lesson 5.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools


@dataclasses.dataclass
class Exercise:
    id: str
    task: str
    function: object  # the implementation in this edition
    qualname: str
    module: str
    override: object = None  # a stand-in installed by the grader


REGISTRY: dict[str, Exercise] = {}


def exercise(exercise_id: str, task: str):
    """Mark a function as exercise ``exercise_id``; ``task`` says what to implement."""

    def decorate(function):
        if exercise_id in REGISTRY:
            raise ValueError(f"exercise: id {exercise_id!r} is used twice")
        entry = Exercise(exercise_id, task, function, function.__qualname__, function.__module__)
        REGISTRY[exercise_id] = entry

        @functools.wraps(function)
        def call(*args, **kwargs):
            chosen = entry.override or entry.function
            return chosen(*args, **kwargs)

        call.exercise_id = exercise_id
        return call

    return decorate


@contextlib.contextmanager
def overridden(replacements: dict):
    """Temporarily route exercises to other implementations: ``{id: function}``."""
    previous = {key: REGISTRY[key].override for key in replacements}
    try:
        for key, function in replacements.items():
            REGISTRY[key].override = function
        yield
    finally:
        for key, function in previous.items():
            REGISTRY[key].override = function
