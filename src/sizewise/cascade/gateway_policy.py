"""Moved to :mod:`sizewise.policy.cascading` (the live cascade is a request-path policy); kept for old imports."""

from sizewise.policy.cascading import DEFAULT_THRESHOLDS as DEFAULT_THRESHOLDS
from sizewise.policy.cascading import LiveCascade as LiveCascade
from sizewise.policy.cascading import cascade_policy as cascade_policy
from sizewise.policy.cascading import parse_name as parse_name
