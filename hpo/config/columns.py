"""Which columns of a tabular data file the classify agent reads (``--text-col`` ... or ``columns:`` in YAML).

The other agents read the fixed ReDSM5 layout and ignore these settings.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ColumnsConfig(BaseModel):
    """Column names: the text (and optional second text of a pair), the label, and the optional group (rows
    of one group never straddle splits) and split (train / validation / test per row) columns."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field("text", min_length=1)
    text_pair: str | None = Field(None, min_length=1)
    label: str = Field("label", min_length=1)
    group: str | None = Field(None, min_length=1)
    split: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> ColumnsConfig:
        named = [v for v in (self.text, self.text_pair, self.label, self.group, self.split) if v is not None]
        repeated = sorted({v for v in named if named.count(v) > 1})
        if repeated:
            raise ValueError(f"column '{repeated[0]}' is named for two roles: give each role its own column")
        return self
