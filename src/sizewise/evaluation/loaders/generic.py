"""Moved to :mod:`sizewise.core.tablefile` (reading a table file is part of the table); kept so old imports work."""

from sizewise.core.tablefile import load_table as load_table
from sizewise.core.tablefile import read_frame as read_frame
