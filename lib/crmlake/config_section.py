"""The base of every configuration section (:mod:`crmlake.config_schema`,
:mod:`crmlake.config_analyze`): unknown keys refused, nothing changed once validated; and the
field bounds the sections share."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Field(gt=0)


class Section(BaseModel):
    """A configuration section: unknown keys are errors, numbers given as text are parsed, and
    nothing changes it once validated (a variant is a copy: ``Conf.with_overrides``)."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True, frozen=True)
