"""Moved to :mod:`sizewise.core.table` (the outcome table is shared vocabulary); kept so old imports work."""

from sizewise.core.table import CELL_FIELDS as CELL_FIELDS
from sizewise.core.table import OutcomeTable as OutcomeTable
from sizewise.core.table import frame_rows as frame_rows
from sizewise.core.text import conversation_text as conversation_text
